// The pieces under the server: SHA-256, model names, header helpers, and the models folder as a
// validated, hashed list mirrored to index.json.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>

#include "ebm/catalog.h"
#include "ebm/error.h"
#include "ebm/model_name.h"
#include "ebm/sha256.h"
#include "http_headers.h"
#include "../process_temp.h"
#include "web_test_util.h"

namespace ebm {
namespace {

using nlohmann::json;
using test::TempDir;
namespace fs = std::filesystem;

TEST(Catalog, StartUpRemovesTheTemporariesOfKilledWritersAndNothingElse) {
  TempDir dir("stale");
  const std::string dead = std::to_string(test::dead_pid());
  const std::string live = std::to_string(::getpid());
  const std::vector<std::string> stale = {"bridges.safetensors.tmp-" + dead + "-0",
                                          "index.json.tmp-" + dead + "-17"};
  const std::vector<std::string> kept = {
      "bridges.safetensors.tmp-" + live + "-1",  // this process is alive
      "other.safetensors.tmp-1-0",               // pid 1 is alive
      "notes.tmp-" + dead,                       // not the writer's pattern
      "notes.tmp-" + dead + "-x",
      ".tmp-" + dead + "-0",  // no name before the tag
      "bridges.safetensors",
      "readme.txt"};
  for (const std::string& f : stale) test::write_text(dir / f, "partial");
  for (const std::string& f : kept) test::write_text(dir / f, "keep");
  fs::create_directories(dir / ("folder.tmp-" + dead + "-0"));
  fs::create_symlink(dir / "readme.txt", dir / ("link.tmp-" + dead + "-0"));

  ModelCatalog catalog(dir.str());
  std::vector<std::string> removed = catalog.removed_temporaries();
  std::sort(removed.begin(), removed.end());
  EXPECT_EQ(removed, stale);
  for (const std::string& f : stale) EXPECT_FALSE(fs::exists(dir / f)) << f;
  for (const std::string& f : kept) EXPECT_TRUE(fs::exists(dir / f)) << f;
  EXPECT_TRUE(fs::is_directory(dir / ("folder.tmp-" + dead + "-0")));
  EXPECT_TRUE(fs::is_symlink(dir / ("link.tmp-" + dead + "-0")));
}

TEST(Sha256, MatchesTheFipsTestVectors) {
  EXPECT_EQ(sha256_hex(std::string()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex(std::string("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(std::string("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

TEST(ModelName, AcceptsPlainNamesAndRefusesPathsHiddenFilesAndOddCharacters) {
  for (const char* ok : {"bridges", "paper-v2", "a.b_c", "9lives", "x"})
    EXPECT_TRUE(is_valid_model_name(ok)) << ok;
  for (const char* bad : {"", "..", "../x", "a/b", ".hidden", "-flag", "_x", "a..b", "sp ace",
                          "back\\slash", "nul\x01", "caf\xc3\xa9"})
    EXPECT_FALSE(is_valid_model_name(bad)) << bad;
  EXPECT_FALSE(is_valid_model_name(std::string(65, 'a')));
  EXPECT_TRUE(is_valid_model_name(std::string(64, 'a')));
  EXPECT_NE(model_name_problem("a/b").find("[A-Za-z0-9._-]"), std::string::npos);
}

TEST(ModelName, FromPathDropsFolderAndExtension) {
  EXPECT_EQ(model_name_from_path("runs/x/bridges.safetensors"), "bridges");
  EXPECT_EQ(model_name_from_path("bridges"), "bridges");
  EXPECT_EQ(model_name_from_path("a.bin"), "a.bin");
}

TEST(HttpHeaders, ContentTypesForTheSiteAndModels) {
  EXPECT_EQ(content_type_for("/x/index.html"), "text/html; charset=utf-8");
  EXPECT_EQ(content_type_for("app.js"), "text/javascript; charset=utf-8");
  EXPECT_EQ(content_type_for("worker.MJS"), "text/javascript; charset=utf-8");
  EXPECT_EQ(content_type_for("ebm_runtime.wasm"), "application/wasm");
  EXPECT_EQ(content_type_for("style.css"), "text/css; charset=utf-8");
  EXPECT_EQ(content_type_for("index.json"), "application/json; charset=utf-8");
  EXPECT_EQ(content_type_for("shot.png"), "image/png");
  EXPECT_EQ(content_type_for("m.safetensors"), "application/octet-stream");
  EXPECT_EQ(content_type_for("dir.d/noext"), "application/octet-stream");
}

TEST(HttpHeaders, PagesAlwaysRevalidateAndHashedRequestsAreImmutable) {
  EXPECT_EQ(cache_control_for("index.html", false), "no-cache");
  EXPECT_EQ(cache_control_for("index.html", true), "no-cache");
  EXPECT_EQ(cache_control_for("m.safetensors", false), "no-cache");
  EXPECT_EQ(cache_control_for("m.safetensors", true), "public, max-age=31536000, immutable");
}

TEST(HttpHeaders, IfNoneMatchListsWeakTagsAndStar) {
  const std::string tag = quoted_etag("abc");
  EXPECT_EQ(tag, "\"abc\"");
  EXPECT_TRUE(etag_matches("\"abc\"", tag));
  EXPECT_TRUE(etag_matches("\"x\", W/\"abc\"", tag));
  EXPECT_TRUE(etag_matches("*", tag));
  EXPECT_FALSE(etag_matches("", tag));
  EXPECT_FALSE(etag_matches("\"abcd\"", tag));
  EXPECT_FALSE(etag_matches("abc", tag));
  EXPECT_FALSE(etag_matches("\"ab", tag));
}

TEST(HttpHeaders, SecretsCompareEqualOnlyWhenIdentical) {
  EXPECT_TRUE(secrets_equal("s3cret", "s3cret"));
  EXPECT_FALSE(secrets_equal("s3cres", "s3cret"));
  EXPECT_FALSE(secrets_equal("s3cret ", "s3cret"));
  EXPECT_FALSE(secrets_equal("", "s3cret"));
  EXPECT_FALSE(secrets_equal("S3CRET", "s3cret"));
}

TEST(ModelCatalog, ListsValidModelsWithCardSizeAndHashAndInvalidOnesWithTheReason) {
  TempDir dir("models");
  const std::string good = test::model_bytes(1, "good one");
  test::write_text(dir / "good.safetensors", good);
  test::write_text(dir / "broken.safetensors", "not a model at all");
  test::write_text(dir / "notes.txt", "ignored");
  test::write_text(dir / "presets/book.json", "{}");
  test::write_text(dir / "presets/nested.safetensors", good);  // subfolders hold no models
  ModelCatalog catalog(dir.str());
  const json list = catalog.list_json();
  ASSERT_EQ(list["models"].size(), 2u) << list.dump(2);
  const json& broken = list["models"][0];
  const json& ok = list["models"][1];
  EXPECT_EQ(broken["name"], "broken");
  EXPECT_FALSE(broken["valid"].get<bool>());
  EXPECT_NE(broken["error"].get<std::string>().find("safetensors"), std::string::npos)
      << broken.dump();
  EXPECT_FALSE(broken.contains("card"));
  EXPECT_EQ(ok["name"], "good");
  EXPECT_EQ(ok["file"], "good.safetensors");
  EXPECT_EQ(ok["url"], "models/good.safetensors");
  EXPECT_TRUE(ok["valid"].get<bool>());
  EXPECT_EQ(ok["size"].get<uint64_t>(), good.size());
  EXPECT_EQ(ok["sha256"], sha256_hex(good));
  EXPECT_EQ(ok["card"]["name"], "good one");
  EXPECT_EQ(ok["input"], (json{{"channels", 1}, {"height", 32}, {"width", 32}}));
  EXPECT_EQ(ok["kind"], "energy");
  EXPECT_EQ(ok["sampler"]["form"], "paper");
}

TEST(ModelCatalog, SeesAReplacedFileAtOnce) {
  TempDir dir("models");
  test::write_text(dir / "m.safetensors", test::model_bytes(1));
  ModelCatalog catalog(dir.str());
  const std::string first = catalog.scan().at(0).sha256;
  const std::string other = test::model_bytes(2);
  test::write_text(dir / "m.tmp", other);
  std::filesystem::rename(dir / "m.tmp", dir / "m.safetensors");
  EXPECT_NE(catalog.scan().at(0).sha256, first);
  EXPECT_EQ(catalog.scan().at(0).sha256, sha256_hex(other));
}

TEST(ModelCatalog, FollowsSymlinksOnlyInsideTheFolder) {
  TempDir outside("outside");
  TempDir dir("models");
  test::write_text(outside / "secret.safetensors", test::model_bytes(3));
  test::write_text(dir / "real.safetensors", test::model_bytes(4));
  std::filesystem::create_symlink(outside / "secret.safetensors", dir / "escape.safetensors");
  std::filesystem::create_symlink(dir / "real.safetensors", dir / "alias.safetensors");
  ModelCatalog catalog(dir.str());
  const std::vector<CatalogEntry> entries = catalog.scan();
  ASSERT_EQ(entries.size(), 2u);
  EXPECT_EQ(entries[0].name, "alias");
  EXPECT_EQ(entries[1].name, "real");
  EXPECT_FALSE(catalog.lookup("escape.safetensors").has_value());
  EXPECT_FALSE(catalog.lookup("../outside/secret.safetensors").has_value());
}

TEST(ModelCatalog, WritesIndexJsonOnlyWhenTheListChanges) {
  TempDir dir("models");
  test::write_text(dir / "a.safetensors", test::model_bytes(1));
  ModelCatalog catalog(dir.str());
  EXPECT_TRUE(catalog.write_index());
  EXPECT_FALSE(catalog.write_index());
  EXPECT_EQ(json::parse(test::read_text(dir / "index.json")), catalog.list_json());
  test::write_text(dir / "b.safetensors", test::model_bytes(2));
  EXPECT_TRUE(catalog.write_index());
  EXPECT_EQ(json::parse(test::read_text(dir / "index.json"))["models"].size(), 2u);
}

TEST(ModelCatalog, PublishValidatesThenWritesAtomicallyAndUpdatesTheIndex) {
  TempDir dir("models");
  ModelCatalog catalog(dir.str());
  const std::string bytes = test::model_bytes(5, "published");
  const ModelCatalog::Published p = catalog.publish("fresh", bytes);
  EXPECT_FALSE(p.replaced);
  EXPECT_TRUE(p.entry.valid);
  EXPECT_EQ(test::read_text(dir / "fresh.safetensors"), bytes);
  EXPECT_EQ(json::parse(test::read_text(dir / "index.json"))["models"][0]["name"], "fresh");
  EXPECT_TRUE(catalog.publish("fresh", test::model_bytes(6)).replaced);

  EXPECT_THROW(catalog.publish("bad", "junk"), Error);
  EXPECT_THROW(catalog.publish("../escape", bytes), Error);
  EXPECT_FALSE(std::filesystem::exists(dir / "bad.safetensors"));
  // No temporary files are left behind.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.str())) {
    (void)e;
    ++files;
  }
  EXPECT_EQ(files, 2);  // fresh.safetensors, index.json
}

TEST(ModelCatalog, RefusesAMissingFolder) {
  EXPECT_THROW(ModelCatalog("/nonexistent/ebm/models"), Error);
}

// The models the repository ships: each one valid, of the kind and shape the page and the
// evaluation expect, and models/index.json (what a static host serves) equal to the list the
// server builds from the files, so a model replaced without refreshing index.json fails here.
TEST(ShippedModels, AreValidAndIndexJsonListsThemAsTheServerDoes) {
  const std::string dir = EBM_TEST_MODELS_DIR;
  ModelCatalog catalog(dir);
  std::map<std::string, json> by_name;
  for (const CatalogEntry& e : catalog.scan()) {
    EXPECT_TRUE(e.valid) << e.file << ": " << e.error;
    by_name[e.name] = e.to_json();
  }
  ASSERT_EQ(by_name.count("bridges"), 1u);
  ASSERT_EQ(by_name.count("bridges-cd"), 1u);
  ASSERT_EQ(by_name.count("bridge-classifier"), 1u);
  ASSERT_EQ(by_name.count("fashion-mnist"), 1u);

  const json& bridges = by_name["bridges"];
  EXPECT_EQ(bridges["kind"], "energy");
  EXPECT_EQ(bridges["input"], json({{"channels", 1}, {"height", 48}, {"width", 192}}));
  EXPECT_GT(bridges["sampler"]["steps"].get<int>(), 0);
  EXPECT_EQ(bridges["card"]["dataset"]["labels"].size(), 8u);
  // The shipped bridge model is the noise-conditional one with its own sampler; the paper's
  // method stays beside it for comparison.
  EXPECT_EQ(bridges["energy"]["form"], "denoiser");
  EXPECT_EQ(bridges["sampler"]["form"], "ddim");
  EXPECT_EQ(bridges["card"]["training"]["objective"], "denoising score matching");
  const json& cd = by_name["bridges-cd"];
  EXPECT_EQ(cd["input"], bridges["input"]);
  EXPECT_EQ(cd["sampler"]["form"], "paper");
  EXPECT_FALSE(cd.contains("energy"));

  const json& classifier = by_name["bridge-classifier"];
  EXPECT_EQ(classifier["kind"], "classifier");
  EXPECT_EQ(classifier["input"], bridges["input"]);
  // The page marks new-type candidates only against the real drawings' sharpness.
  EXPECT_GT(classifier["card"]["reference"]["sharpness"].get<double>(), 0.5);
  // The labeller is the clean classifier; the guide of the noise-level samplers reads noised
  // drawings with their sigma, and says so (the page picks its labeller by it).
  EXPECT_FALSE(classifier.contains("noise_conditional"));
  ASSERT_EQ(by_name.count("bridge-guide"), 1u);
  const json& guide = by_name["bridge-guide"];
  EXPECT_EQ(guide["kind"], "classifier");
  EXPECT_EQ(guide["noise_conditional"], true);
  EXPECT_EQ(guide["energy"]["form"], "scalar");
  EXPECT_EQ(guide["input"], bridges["input"]);
  EXPECT_EQ(guide["labels"], classifier["labels"]);

  EXPECT_EQ(by_name["fashion-mnist"]["kind"], "energy");
  EXPECT_EQ(by_name["fashion-mnist"]["input"],
            json({{"channels", 1}, {"height", 32}, {"width", 32}}));
  // Fashion-MNIST is drawn by the same method as the bridges (not bridge-specific).
  EXPECT_EQ(by_name["fashion-mnist"]["energy"]["form"], "denoiser");
  EXPECT_EQ(by_name["fashion-mnist"]["sampler"]["form"], "ddim");

  std::ifstream in(dir + "/index.json");
  ASSERT_TRUE(in) << "no " << dir << "/index.json: run ebm-serve --models " << dir << " once";
  EXPECT_EQ(json::parse(in), catalog.list_json())
      << "models/index.json is stale: run ebm-serve --models models (it rewrites it) and commit it";
}

}  // namespace
}  // namespace ebm
