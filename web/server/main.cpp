// ebm-serve: serves the page (a site folder: web/page plus the wasm runtime) and a models folder,
// and accepts published models when given a token. Stops cleanly on SIGINT or SIGTERM.
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <thread>

#include "ebm/cli.h"
#include "ebm/error.h"
#include "server.h"

namespace {

std::string read_token_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw ebm::Error("cannot read token file '" + path + "'");
  std::string token;
  std::getline(in, token);
  while (!token.empty() && (token.back() == '\r' || token.back() == ' ')) token.pop_back();
  if (token.empty()) throw ebm::Error("token file '" + path + "' is empty");
  return token;
}

}  // namespace

int main(int argc, char** argv) {
  ebm::ServerOptions opt;
  opt.web_dir = "build/site";
  opt.models_dir = "models";
  std::string token_file;
  int max_upload_mb = 64;
  int header_timeout_s = 10;
  int max_connections = 4096;

  ebm::ArgParser args("ebm-serve",
                      "Serves the bridge-ebm page and a models folder over HTTP: the site, "
                      "GET /api/models, the model files (ETag, 304, Cache-Control), /health, and "
                      "PUT /api/models/<name> to publish when a token is set.");
  args.option("web", "DIR", "site folder (web/page plus ebm_runtime.js/.wasm)", &opt.web_dir);
  args.option("models", "DIR", "models folder: its *.safetensors are listed and served",
              &opt.models_dir);
  args.option("host", "ADDR", "address to listen on", &opt.host);
  args.option("port", "N", "port; 0 picks a free one and prints it", &opt.port, 0, 65535);
  args.option("publish-token-file", "FILE",
              "enable publishing: the bearer token is the file's first line (or set "
              "EBM_PUBLISH_TOKEN)",
              &token_file);
  args.option("max-upload-mb", "N", "largest model accepted by publishing, in MiB", &max_upload_mb,
              1, 2048);
  args.option("header-timeout-s", "N",
              "a request header must arrive whole within N seconds of the connection (or of the "
              "previous response); slower clients get 408 and are closed",
              &header_timeout_s, 1, 600);
  args.option("workers", "N", "threads running request handlers (idle connections use none)",
              &opt.workers, 1, 256);
  args.option("max-connections", "N",
              "connections waiting for their request at once; beyond it the longest-waiting "
              "one is closed",
              &max_connections, 16, 1 << 20);
  args.example("ebm-serve --web build/site --models models --port 8080");
  args.example("EBM_PUBLISH_TOKEN=secret ebm-serve --port 0");
  args.parse(argc, argv);

  return ebm::run_main("ebm-serve", [&]() {
    if (!token_file.empty()) {
      opt.publish_token = read_token_file(token_file);
    } else if (const char* env = std::getenv("EBM_PUBLISH_TOKEN"); env && *env) {
      opt.publish_token = env;
    }
    opt.max_upload_bytes = uint64_t(max_upload_mb) << 20;
    opt.header_timeout_ms = header_timeout_s * 1000;
    opt.max_connections = size_t(max_connections);
    // Each waiting connection is a file descriptor: allow as many as the hard limit does.
    rlimit files{};
    if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
      files.rlim_cur = files.rlim_max;
      ::setrlimit(RLIMIT_NOFILE, &files);
    }

    // Signals are taken by one thread with sigwait, never by a handler in the middle of a
    // request; every thread started after this inherits the mask.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

    ebm::HttpServer server(opt);
    const int port = server.bind();
    std::atomic<bool> done{false};
    std::thread waiter([&]() {
      int sig = 0;
      sigwait(&stop_signals, &sig);
      if (done.load()) return;
      std::fprintf(stderr, "ebm-serve: %s, shutting down\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
      server.stop();
    });
    std::printf("ebm-serve: serving %s on http://%s:%d/ (models from %s, publishing %s)\n",
                opt.web_dir.c_str(), opt.host.c_str(), port, opt.models_dir.c_str(),
                opt.publish_token.empty() ? "off" : "on");
    std::fflush(stdout);
    const bool ok = server.run();
    // run() also returns when the listener fails; wake the waiter so it can be joined.
    done.store(true);
    if (waiter.joinable()) {
      pthread_kill(waiter.native_handle(), SIGTERM);
      waiter.join();
    }
    std::fprintf(stderr, "ebm-serve: stopped\n");
    return ok ? 0 : 1;
  });
}
