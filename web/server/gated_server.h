// cpp-httplib's Server with a front door that slow clients cannot hold shut.
//
// httplib gives every accepted connection to one of a fixed pool of threads, which then waits
// for that connection's request: eight clients that connect and say nothing (or send a header
// line every few seconds) occupy all eight threads, and nobody else is answered. GatedServer
// keeps httplib's parsing, routing and responses but changes who waits: one thread (the gate)
// holds every connection in epoll until a complete request header has arrived, and only then
// hands it to a worker, which runs httplib's process_request on the bytes already read. Idle,
// keep-alive and slowloris connections cost a file descriptor and a buffer, never a thread.
//
// The gate also enforces what httplib does not:
//   - a deadline for the whole request header (408 and close when it passes),
//   - caps on its size and line count (431 and close),
//   - a cap on the connections held at once (the one waiting longest is closed first).
// A request that declares a body is answered with "Connection: close" so that whatever of the
// body was not read (a refused upload) is never parsed as the next request.
//
// What it does not change: a worker still writes a response at the client's pace (bounded by the
// write timeout per send), so many slow *readers* of large files can occupy the workers. Facing
// the public, run behind nginx (deploy/nginx/ebm-serve.conf), which buffers responses.
#pragma once

#include <httplib.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace ebm {

struct GateLimits {
  int header_timeout_ms = 10000;    // from connect (or the previous response) to the header's end
  size_t max_header_bytes = 32768;  // request line and header lines, blank line included
  size_t max_header_lines = 100;    // request line included
  size_t max_connections = 4096;    // held by the gate at once
  size_t keep_alive_max = 100;      // requests per connection
  int workers = 8;                  // threads running handlers
};

// The gate's verdict on the bytes received so far of a request header (exposed for tests and the
// fuzz target): kIncomplete, kComplete (header_end: bytes up to and including the blank line),
// or kTooLarge.
struct HeaderScan {
  enum Status { kIncomplete, kComplete, kTooLarge } status = kIncomplete;
  size_t header_end = 0;
  bool has_body = false;  // Content-Length other than 0, or any Transfer-Encoding
};
HeaderScan scan_request_header(const char* data, size_t size, size_t max_bytes, size_t max_lines);

class GatedServer : public httplib::Server {
 public:
  explicit GatedServer(GateLimits limits);
  ~GatedServer() override;

  // Body of the JSON error sent for 408 and 431 by the gate itself (httplib never sees those
  // requests): {"error": message}.
  void set_gate_error_body(std::function<std::string(int status, const std::string& message)> f);

  // Like Server::listen_after_bind, with the gate and the workers running; stop() ends both.
  bool listen_gated();
  void stop_gated();

  // One raw request answered without a socket, as a connection would be (the gate's header
  // checks, then httplib and the handlers); the bytes after the header are the body. For the
  // fuzz target and tests.
  std::string answer(const std::string& request);

 private:
  struct Conn;
  struct Ready {
    int fd;
    std::string bytes;
    size_t served;
    bool has_body;
  };

  bool process_and_close_socket(socket_t sock) override;  // called on the accept thread
  void admit(int fd, std::string pending, size_t served);
  void gate_loop();
  void worker_loop();
  void serve(Ready r);
  void refuse(int fd, int status, const std::string& message);
  std::string gate_response(int status, const std::string& message) const;

  GateLimits limits_;
  std::function<std::string(int, const std::string&)> error_body_;
  int epoll_fd_ = -1;
  int wake_fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::thread gate_;
  std::vector<std::thread> workers_;

  std::mutex admit_mu_;
  std::vector<std::unique_ptr<Conn>> admitted_;  // handed to the gate thread on its next wake

  std::mutex ready_mu_;
  std::condition_variable ready_cv_;
  std::deque<Ready> ready_;
  std::mutex stop_mu_;
  bool started_ = false, stopped_ = false;
};

}  // namespace ebm
