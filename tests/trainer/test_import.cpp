// ebm-import on TorchScript models that this test writes with Debian's python3-torch: scripted
// and traced Sequentials of every supported module convert to files whose runtime energies equal
// PyTorch's own outputs; unsupported or misbehaving models are refused and nothing is written.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "ebm/fileio.h"
#include "ebm/model.h"
#include "ebm/network.h"
#include "ebm/safetensors.h"
#include "trainer_test_util.h"

namespace ebm::train {
namespace {

constexpr const char* kScript = R"PY(
import sys, torch, torch.nn as nn
out = sys.argv[1]
torch.manual_seed(0)

def energy_net():
    m = nn.Sequential(
        nn.ZeroPad2d((1, 2, 1, 2)),            # TensorFlow-style asymmetric "same" padding
        nn.Conv2d(1, 8, 5, stride=2),
        nn.BatchNorm2d(8, eps=1e-3),
        nn.SiLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False),
        nn.LeakyReLU(0.2),
        nn.AvgPool2d(2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(16 * 3 * 12, 32),
        nn.SiLU(),
        nn.Dropout(0.1),
        nn.Linear(32, 1))
    bn = m[2]
    with torch.no_grad():                     # statistics far from (0, 1)
        bn.running_mean.uniform_(-0.5, 0.5)
        bn.running_var.uniform_(0.3, 2.0)
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-0.3, 0.3)
    return m.eval()

class ShiftedConv(nn.Conv2d):                 # claims to be a Conv2d, adds 1: must be refused
    def forward(self, x):
        return self._conv_forward(x, self.weight, self.bias) + 1.0
ShiftedConv.__name__ = ShiftedConv.__qualname__ = "Conv2d"

m = energy_net()
x = torch.rand(4, 1, 24, 96) * 2 - 1
with torch.no_grad():
    y = m(x)
x.numpy().tofile(out + "/inputs.f32")
y.numpy().tofile(out + "/outputs.f32")
torch.jit.script(m).save(out + "/energy_script.pt")
torch.jit.trace(m, x).save(out + "/energy_trace.pt")

c = nn.Sequential(nn.Conv2d(1, 4, 3, padding="same"), nn.SiLU(), nn.Flatten(),
                  nn.Linear(4 * 24 * 96, 3)).eval()
with torch.no_grad():
    c(x).numpy().tofile(out + "/logits.f32")
torch.jit.script(c).save(out + "/classifier.pt")

torch.jit.script(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Tanh(), nn.Flatten(),
                               nn.Linear(4 * 22 * 94, 1)).eval()).save(out + "/tanh.pt")
torch.jit.script(nn.Sequential(ShiftedConv(1, 4, 3), nn.Flatten(),
                               nn.Linear(4 * 22 * 94, 1)).eval()).save(out + "/shifted.pt")
)PY";

std::string g_dir;  // where the Python script wrote its models ("" if it could not run)

class Import : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    const std::string python = EBM_PYTHON;
    if (python.empty() || std::system((python + " -c 'import torch' 2>/dev/null").c_str()) != 0)
      return;
    const std::string dir = test::scratch_dir("import");
    write_file_atomic(dir + "/make_models.py", std::string(kScript));
    if (std::system(
            (python + " " + dir + "/make_models.py " + dir + " 2>" + dir + "/py.log").c_str()) == 0)
      g_dir = dir;
    else
      ADD_FAILURE() << "the model-writing script failed; see " << dir << "/py.log";
  }
  void SetUp() override {
    if (g_dir.empty())
      GTEST_SKIP() << "Debian's python3-torch is not installed (apt-get install python3-torch); "
                      "skipping the TorchScript import tests";
  }

  static int import(const std::vector<std::string>& args, std::string* output) {
    std::string cmd = EBM_IMPORT_EXE;
    for (const std::string& a : args) cmd += " '" + a + "'";
    cmd += " > " + g_dir + "/out.txt 2>&1";
    const int status = std::system(cmd.c_str());
    std::ifstream in(g_dir + "/out.txt");
    std::stringstream s;
    s << in.rdbuf();
    *output = s.str();
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  static std::vector<float> floats(const std::string& name) {
    const std::vector<uint8_t> b = read_file(g_dir + "/" + name);
    std::vector<float> v(b.size() / 4);
    std::memcpy(v.data(), b.data(), v.size() * 4);
    return v;
  }
};

double max_rel(const std::vector<float>& a, const std::vector<float>& b) {
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, double(std::abs(a[i] - b[i])));
    scale = std::max(scale, double(std::abs(b[i])));
  }
  return diff / scale;
}

std::vector<float> runtime_outputs(const std::string& file, const std::vector<float>& x, int n) {
  Network net = Network::from_file(file);
  std::vector<float> out(static_cast<size_t>(n * net.outputs()));
  net.logits(x.data(), n, out.data());
  return out;
}

TEST_F(Import, ScriptedAndTracedEnergyModelsGiveTheRuntimePyTorchsEnergies) {
  const std::vector<float> x = floats("inputs.f32"), y = floats("outputs.f32");
  for (const char* name : {"energy_script", "energy_trace"}) {
    const std::string file = g_dir + "/" + name + ".safetensors";
    std::string out;
    ASSERT_EQ(
        import({g_dir + "/" + name + ".pt", "--input", "1x24x96", "--out", file, "--f32"}, &out), 0)
        << out;
    EXPECT_NE(out.find("ZeroPad2d -> padding of the next layer"), std::string::npos) << out;
    EXPECT_NE(out.find("Dropout -> skipped"), std::string::npos) << out;
    const std::vector<float> e = runtime_outputs(file, x, 4);
    EXPECT_LE(max_rel(e, y), 1e-4) << name;
  }
}

TEST_F(Import, DefaultsToF16AndScoreModelsAreNegated) {
  const std::vector<float> x = floats("inputs.f32"), y = floats("outputs.f32");
  const std::string file = g_dir + "/score.safetensors";
  std::string out;
  ASSERT_EQ(
      import({g_dir + "/energy_script.pt", "--input", "1x24x96", "--out", file, "--score"}, &out),
      0)
      << out;
  const std::vector<uint8_t> bytes = read_file(file);
  for (const Tensor& t : parse_safetensors(bytes.data(), bytes.size()).tensors)
    EXPECT_EQ(t.stored, DType::kF16);
  std::vector<float> neg(y.size());
  for (size_t i = 0; i < y.size(); ++i) neg[i] = -y[i];
  EXPECT_LE(max_rel(runtime_outputs(file, x, 4), neg), 1e-2);  // F16 weights
}

TEST_F(Import, ClassifierKeepsItsLabelsAndLogits) {
  const std::vector<float> x = floats("inputs.f32"), logits = floats("logits.f32");
  const std::string file = g_dir + "/cls.safetensors";
  std::string out;
  ASSERT_EQ(import({g_dir + "/classifier.pt", "--input", "1x24x96", "--out", file, "--f32",
                    "--kind", "classifier", "--labels", "arch,beam,cable"},
                   &out),
            0)
      << out;
  const Model m = load_model(file);
  EXPECT_EQ(m.kind, ModelKind::kClassifier);
  EXPECT_EQ(m.labels, (std::vector<std::string>{"arch", "beam", "cable"}));
  EXPECT_LE(max_rel(runtime_outputs(file, x, 4), logits), 1e-4);
}

TEST_F(Import, UnsupportedModulesAndDisagreeingModelsAreRefusedAndNothingIsWritten) {
  std::string out;
  EXPECT_EQ(import({g_dir + "/tanh.pt", "--input", "1x24x96", "--out", g_dir + "/tanh.safetensors"},
                   &out),
            1);
  EXPECT_NE(out.find("child 1 (Tanh): unsupported module"), std::string::npos) << out;
  EXPECT_EQ(
      import({g_dir + "/shifted.pt", "--input", "1x24x96", "--out", g_dir + "/shifted.safetensors"},
             &out),
      1);
  EXPECT_NE(out.find("disagrees"), std::string::npos) << out;
  EXPECT_EQ(import({g_dir + "/energy_script.pt", "--input", "1x20x96", "--out",
                    g_dir + "/wrong.safetensors"},
                   &out),
            1);
  EXPECT_NE(out.find("1x20x96"), std::string::npos) << out;
  for (const char* f : {"/tanh.safetensors", "/shifted.safetensors", "/wrong.safetensors"})
    EXPECT_FALSE(std::ifstream(g_dir + f).good()) << f;
}

}  // namespace
}  // namespace ebm::train
