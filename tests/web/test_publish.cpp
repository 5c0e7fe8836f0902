// The publish library and the two programs as a user runs them: ebm-publish (to a server and to
// a folder) and ebm-serve (arguments, port 0, clean shutdown on SIGTERM and SIGINT).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include <httplib.h>

#include <nlohmann/json.hpp>

#include "ebm/error.h"
#include "ebm/publish.h"
#include "ebm/sha256.h"
#include "web_test_util.h"

namespace ebm {
namespace {

using nlohmann::json;
using test::RunningServer;
using test::TempDir;

std::vector<uint8_t> as_bytes(const std::string& s) {
  return {s.begin(), s.end()};
}

struct Folders {
  TempDir root{"root"};
  std::string web = root / "web", models = root / "models";
  Folders() {
    test::write_text(web + "/index.html", "<p>page</p>");
    test::fs::create_directories(models);
  }
  ServerOptions options(const std::string& token) const {
    ServerOptions o;
    o.web_dir = web;
    o.models_dir = models;
    o.publish_token = token;
    o.log = nullptr;
    return o;
  }
};

TEST(PublishLibrary, UploadsToAServerAndReturnsItsAnswer) {
  Folders f;
  RunningServer srv(f.options("tok"));
  const std::string model = test::model_bytes(21, "uploaded");
  const PublishResult ok = publish_to_server(srv.url(), "tok", "up", as_bytes(model));
  EXPECT_EQ(ok.status, 201) << ok.text;
  EXPECT_TRUE(ok.ok());
  EXPECT_EQ(ok.body["sha256"], sha256_hex(model));
  EXPECT_EQ(test::read_text(f.models + "/up.safetensors"), model);

  const PublishResult refused = publish_to_server(srv.url(), "nope", "up", as_bytes(model));
  EXPECT_EQ(refused.status, 401);
  EXPECT_FALSE(refused.ok());
  EXPECT_EQ(refused.body["error"], "wrong publish token");
}

TEST(PublishLibrary, ValidatesLocallyBeforeSendingAnything) {
  Folders f;
  FILE* log = std::tmpfile();
  ServerOptions o = f.options("tok");
  o.log = log;
  {
    RunningServer srv(o);
    try {
      publish_to_server(srv.url(), "tok", "bad", as_bytes("not a model"));
      ADD_FAILURE() << "an invalid model was accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("not a valid model"), std::string::npos) << e.what();
    }
    EXPECT_THROW(publish_to_server(srv.url(), "tok", "../x", as_bytes(test::model_bytes(1))),
                 Error);
  }
  std::rewind(log);
  std::string text;
  char buf[512];
  while (std::fgets(buf, sizeof buf, log)) text += buf;
  std::fclose(log);
  EXPECT_EQ(text.find("PUT"), std::string::npos) << "the server saw a request:\n" << text;
}

TEST(PublishLibrary, ReportsAnUnreachableServer) {
  // A port that was free a moment ago: bind and close.
  int port = 0;
  {
    Folders f;
    RunningServer srv(f.options(""));
    port = srv.port();
  }
  try {
    publish_to_server("http://127.0.0.1:" + std::to_string(port), "t", "m",
                      as_bytes(test::model_bytes(1)));
    ADD_FAILURE() << "no error for a closed port";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot reach"), std::string::npos) << e.what();
  }
  EXPECT_THROW(publish_to_server("ftp://x", "t", "m", as_bytes(test::model_bytes(1))), Error);
}

TEST(PublishLibrary, WritesIntoAFolderWithItsIndex) {
  Folders f;
  const std::string model = test::model_bytes(22, "in folder");
  const std::string path = f.root / "trained.safetensors";
  test::write_text(path, model);
  const PublishResult r = publish_model_file(path, f.models, "");
  EXPECT_TRUE(r.ok());
  EXPECT_EQ(r.body["name"], "trained");
  EXPECT_EQ(test::read_text(f.models + "/trained.safetensors"), model);
  EXPECT_EQ(json::parse(test::read_text(f.models + "/index.json"))["models"][0]["card"]["name"],
            "in folder");
}

// --- the programs -------------------------------------------------------------------------------

struct ProgramRun {
  int code = -1;
  std::string out;  // stdout and stderr together
};

ProgramRun run(const std::string& command) {
  ProgramRun r;
  FILE* p = ::popen((command + " 2>&1").c_str(), "r");
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.out.append(buf, n);
  const int status = ::pclose(p);
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

TEST(PublishProgram, HelpBadArgumentsAndBadFiles) {
  Folders f;
  const std::string bin = EBM_PUBLISH_BIN;
  ProgramRun r = run(bin + " --help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("--to"), std::string::npos) << r.out;
  r = run(bin + " --to " + f.models);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("no model file given"), std::string::npos) << r.out;
  r = run(bin + " x.safetensors");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("missing --to"), std::string::npos) << r.out;
  r = run(bin + " " + f.root / "absent.safetensors --to " + f.models);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("absent.safetensors"), std::string::npos) << r.out;
  test::write_text(f.root / "junk.safetensors", "junk");
  r = run(bin + " " + f.root / "junk.safetensors --to " + f.models);
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("not a valid model"), std::string::npos) << r.out;
}

TEST(PublishProgram, UploadsAndPrintsTheServersAnswer) {
  Folders f;
  RunningServer srv(f.options("tok"));
  const std::string file = f.root / "m.safetensors";
  test::write_text(file, test::model_bytes(23));
  ProgramRun r = run(std::string(EBM_PUBLISH_BIN) + " " + file + " --to " + srv.url() +
                     " --token tok --name renamed");
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("\"name\": \"renamed\""), std::string::npos) << r.out;
  EXPECT_TRUE(test::fs::exists(f.models + "/renamed.safetensors"));
  r = run(std::string(EBM_PUBLISH_BIN) + " " + file + " --to " + srv.url() + " --token bad");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("HTTP 401"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("wrong publish token"), std::string::npos) << r.out;
}

TEST(ServeProgram, HelpAndBadArguments) {
  Folders f;
  const std::string bin = EBM_SERVE_BIN;
  ProgramRun r = run(bin + " --help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("--models"), std::string::npos);
  r = run(bin + " --port 70000");
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.out.find("--port"), std::string::npos) << r.out;
  r = run(bin + " --web " + f.root / "nowhere --models " + f.models + " --port 0");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("nowhere"), std::string::npos) << r.out;
  r = run(bin + " --web " + f.web + " --models " + f.models + " --host 203.0.113.9 --port 0");
  EXPECT_EQ(r.code, 1);
  EXPECT_NE(r.out.find("cannot listen"), std::string::npos) << r.out;
}

// Starts ebm-serve --port 0, reads the URL it prints, checks it answers, then sends `sig`.
void serve_then_signal(int sig) {
  Folders f;
  int out_pipe[2], err_pipe[2];
  ASSERT_EQ(::pipe(out_pipe), 0);
  ASSERT_EQ(::pipe(err_pipe), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    ::close(out_pipe[0]);
    ::close(err_pipe[0]);
    ::execl(EBM_SERVE_BIN, "ebm-serve", "--web", f.web.c_str(), "--models", f.models.c_str(),
            "--port", "0", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  std::string line;
  char c;
  while (::read(out_pipe[0], &c, 1) == 1 && c != '\n') line += c;
  const size_t at = line.find("http://127.0.0.1:");
  ASSERT_NE(at, std::string::npos) << line;
  const int port = std::atoi(line.c_str() + at + 17);
  ASSERT_GT(port, 0) << line;
  httplib::Client client("127.0.0.1", port);
  auto r = client.Get("/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  ::kill(pid, sig);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  std::string err;
  char buf[1024];
  for (ssize_t n; (n = ::read(err_pipe[0], buf, sizeof buf)) > 0;) err.append(buf, size_t(n));
  ::close(out_pipe[0]);
  ::close(err_pipe[0]);
  ASSERT_TRUE(WIFEXITED(status)) << "killed by a signal instead of shutting down";
  EXPECT_EQ(WEXITSTATUS(status), 0) << err;
  EXPECT_NE(err.find("shutting down"), std::string::npos) << err;
  EXPECT_NE(err.find("\"GET /health\" 200"), std::string::npos) << err;
}

TEST(ServeProgram, PrintsTheChosenPortAndStopsCleanlyOnSigterm) {
  serve_then_signal(SIGTERM);
}
TEST(ServeProgram, StopsCleanlyOnSigint) {
  serve_then_signal(SIGINT);
}

}  // namespace
}  // namespace ebm
