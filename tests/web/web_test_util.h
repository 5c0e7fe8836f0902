// Helpers for the web tests: throwaway folders, small valid models, an in-process server on an
// ephemeral 127.0.0.1 port, and raw HTTP requests sent byte for byte (no client-side cleanup of
// the path, so traversal attempts reach the server as written).
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "ebm/architecture.h"
#include "ebm/model.h"
#include "server.h"

namespace ebm::test {

namespace fs = std::filesystem;

// A fresh folder under the test temp dir, removed at the end of the test.
class TempDir {
 public:
  explicit TempDir(const std::string& tag) {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path_ = fs::path(::testing::TempDir()) / ("ebm_web_" + std::string(info ? info->name() : "x") +
                                              "_" + tag + "_" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string str() const { return path_.string(); }
  std::string operator/(const std::string& rel) const { return (path_ / rel).string(); }

 private:
  fs::path path_;
};

inline void write_text(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

inline std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// A valid model file (the book preset, random weights): `seed` varies the bytes, `name` the card.
inline std::string model_bytes(uint64_t seed, const std::string& name = "test model") {
  Model m =
      random_model(load_preset(std::string(EBM_TEST_MODELS_DIR) + "/presets/book.json").arch, seed);
  m.card = {{"name", name}, {"description", "random weights for the web tests"}};
  const std::vector<uint8_t> b = serialize_model(m);
  return std::string(b.begin(), b.end());
}

// Runs an HttpServer on 127.0.0.1:<free port> in a thread for the lifetime of the object.
class RunningServer {
 public:
  explicit RunningServer(ServerOptions opt) {
    opt.host = "127.0.0.1";
    opt.port = 0;
    server_ = std::make_unique<HttpServer>(opt);
    port_ = server_->bind();
    thread_ = std::thread([this] { server_->run(); });
    for (int i = 0; i < 200 && !server_->running(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ~RunningServer() {
    server_->stop();
    thread_.join();
  }
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  std::unique_ptr<HttpServer> server_;
  std::thread thread_;
  int port_ = 0;
};

struct RawResponse {
  int status = 0;
  std::string head, body;
};

// A socket connected to 127.0.0.1:port, or -1; reads give up after `timeout_s` (0: never).
inline int connect_loopback(int port, double timeout_s = 0) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(uint16_t(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (timeout_s > 0) {
    timeval tv{long(timeout_s), long((timeout_s - long(timeout_s)) * 1e6)};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends `request_line` ("GET /%2e%2e/x HTTP/1.1") exactly as given and reads until close.
inline RawResponse raw_request(int port, const std::string& request_line,
                               const std::string& extra_headers = "") {
  RawResponse r;
  const int fd = connect_loopback(port);
  if (fd < 0) return r;
  const std::string req =
      request_line + "\r\nHost: 127.0.0.1\r\nConnection: close\r\n" + extra_headers + "\r\n";
  (void)!::write(fd, req.data(), req.size());
  std::string all;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) all.append(buf, size_t(n));
  ::close(fd);
  const size_t split = all.find("\r\n\r\n");
  r.head = all.substr(0, split);
  r.body = split == std::string::npos ? "" : all.substr(split + 4);
  if (all.size() > 12) r.status = std::atoi(all.c_str() + 9);
  return r;
}

}  // namespace ebm::test
