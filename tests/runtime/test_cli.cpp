#include <gtest/gtest.h>

#include "ebm/cli.h"
#include "ebm/error.h"
#include "ebm/sampler_flags.h"
#include "ebm/sampler_params.h"

namespace ebm {
namespace {

struct Parsed {
  int steps = 100;
  double noise = 0.005;
  std::string model;
  bool quiet = false;
};

void parse(std::vector<std::string> argv_s, Parsed* p) {
  ArgParser args("prog", "test program");
  args.option("model", "FILE", "model", &p->model, true);
  args.option("steps", "K", "steps", &p->steps, 0, 1000);
  args.option("noise", "X", "noise", &p->noise, 0.0, 1.0);
  args.flag("quiet", "quiet", &p->quiet);
  std::vector<char*> argv;
  argv_s.insert(argv_s.begin(), "prog");
  for (std::string& s : argv_s) argv.push_back(s.data());
  args.parse(int(argv.size()), argv.data());
}

TEST(ArgParser, ParsesBothSpellingsOfValues) {
  Parsed p;
  parse({"--model", "m.st", "--steps=20", "--noise", "0.01", "--quiet"}, &p);
  EXPECT_EQ(p.model, "m.st");
  EXPECT_EQ(p.steps, 20);
  EXPECT_DOUBLE_EQ(p.noise, 0.01);
  EXPECT_TRUE(p.quiet);
}

TEST(ArgParserDeathTest, BadArgumentsExitWithCode2AndNameTheProblem) {
  Parsed p;
  EXPECT_EXIT(parse({"--model", "m", "--steps", "abc"}, &p), ::testing::ExitedWithCode(2),
              "--steps: expected an integer from 0 to 1000, got 'abc'");
  EXPECT_EXIT(parse({"--model", "m", "--steps", "5000"}, &p), ::testing::ExitedWithCode(2),
              "--steps: expected an integer");
  EXPECT_EXIT(parse({"--model", "m", "--stpes", "5"}, &p), ::testing::ExitedWithCode(2),
              "unknown option '--stpes' \\(did you mean --steps\\?\\)");
  EXPECT_EXIT(parse({"--steps", "5"}, &p), ::testing::ExitedWithCode(2), "missing --model FILE");
  EXPECT_EXIT(parse({"--model"}, &p), ::testing::ExitedWithCode(2), "--model needs a value");
  EXPECT_EXIT(parse({"--model", "m", "--noise", "nan"}, &p), ::testing::ExitedWithCode(2),
              "--noise: expected a number");
  EXPECT_EXIT(parse({"--model", "m", "stray"}, &p), ::testing::ExitedWithCode(2),
              "unexpected argument 'stray'");
  EXPECT_EXIT(parse({"--model", "m", "--quiet=yes"}, &p), ::testing::ExitedWithCode(2),
              "--quiet takes no value");
}

TEST(ArgParserDeathTest, HelpListsEveryOptionWithItsDefaultAndExitsZero) {
  Parsed p;
  EXPECT_EXIT(
      {
        parse({"--help"}, &p);
      },
      ::testing::ExitedWithCode(0), "");
  ArgParser args("prog", "does things");
  int steps = 100;
  args.option("steps", "K", "number of steps", &steps, 0, 1000);
  const std::string help = args.help();
  EXPECT_NE(help.find("Usage: prog"), std::string::npos);
  EXPECT_NE(help.find("--steps K"), std::string::npos);
  EXPECT_NE(help.find("(default: 100)"), std::string::npos);
}

TEST(ArgParser, HelpThatNamesItsDefaultInWordsDoesNotShowTheSentinelValue) {
  ArgParser args("prog", "does things");
  int steps = -1;
  args.option("steps", "K", "Langevin steps (default: the model's)", &steps, 0, 1000);
  const std::string help = args.help();
  EXPECT_NE(help.find("Langevin steps (default: the model's)\n"), std::string::npos) << help;
  EXPECT_EQ(help.find("(default: -1)"), std::string::npos) << help;
}

TEST(FormatDuration, ReadsLikeAClock) {
  EXPECT_EQ(format_duration(4.24), "4.2s");
  EXPECT_EQ(format_duration(125), "2:05");
  EXPECT_EQ(format_duration(3723), "1:02:03");
}

// The sampler flags of ebm-sample and ebm-eval: only the given ones override the model's
// settings, under their ebm.sampler names, and parse_sampler_params then validates them.
nlohmann::json sampler_overrides(std::vector<const char*> argv) {
  ArgParser args("prog", "test");
  SamplerFlags flags;
  flags.add_to(args);
  argv.insert(argv.begin(), "prog");
  args.parse(int(argv.size()), const_cast<char**>(argv.data()));
  return flags.overrides(args);
}

TEST(SamplerFlags, OnlyTheGivenFlagsOverrideTheModelsSettings) {
  EXPECT_EQ(sampler_overrides({}), nlohmann::json::object());
  const nlohmann::json j =
      sampler_overrides({"--eta", "0.5", "--sigma-max", "3", "--steps", "20", "--form", "ddim"});
  EXPECT_EQ(j, (nlohmann::json{{"eta", 0.5}, {"sigma_max", 3.0}, {"steps", 20}, {"form", "ddim"}}));
  SamplerParams model = default_sampler_params(SamplerForm::kDdim);
  model.sigma_min = 0.05f;
  const SamplerParams p = parse_sampler_params(j, model);
  EXPECT_EQ(p.form, SamplerForm::kDdim);
  EXPECT_EQ(p.steps, 20);
  EXPECT_FLOAT_EQ(p.eta, 0.5f);
  EXPECT_FLOAT_EQ(p.sigma_max, 3.0f);
  EXPECT_FLOAT_EQ(p.sigma_min, 0.05f);  // not given: the model's
  // A given but inconsistent setting is refused by the one validation.
  EXPECT_THROW(parse_sampler_params(sampler_overrides({"--sigma-min", "5", "--sigma-max", "1"}),
                                    model),
               Error);
  // The two-piece schedule's flags, as ints and floats.
  const SamplerParams split = parse_sampler_params(
      sampler_overrides({"--split-sigma", "2", "--split-levels", "4", "--steps", "20"}), model);
  EXPECT_FLOAT_EQ(split.split_sigma, 2.0f);
  EXPECT_EQ(split.split_levels, 4);
  // Rounds up to a noise level, over a model whose own setting is another.
  model.resample = 2;
  model.resample_sigma_max = 1.0f;
  const SamplerParams rounds =
      parse_sampler_params(sampler_overrides({"--resample", "3", "--resample-sigma-max", "0"}), model);
  EXPECT_EQ(rounds.resample, 3);
  EXPECT_EQ(rounds.resample_sigma_max, 0.0f);
  EXPECT_EQ(parse_sampler_params(sampler_overrides({"--resample", "3"}), model).resample_sigma_max,
            1.0f);
}

}  // namespace
}  // namespace ebm
