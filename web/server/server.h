// ebm-serve as a library: the page (a site folder), the models folder and the publish endpoint.
//
//   GET  /health                  {"status":"ok","models":N}
//   GET  /api/models              {"models":[...]} (see ebm/catalog.h), also kept in index.json
//   PUT  /api/models/<name>       publish, with "Authorization: Bearer <token>"
//   GET  /models/<file>           a model file, or the folder's index.json
//   GET  /<path>                  the site (index.html for folders)
//
// Every file goes out with its type, a strong ETag (its SHA-256; If-None-Match gives 304) and
// Cache-Control. Errors are JSON: {"error": "..."}. One access-log line per request.
// Hostile clients: see gated_server.h (header deadline and caps, idle connections cost no thread),
// requests with a body are judged on their header before the body is read (token, size), and a
// Range of several parts is answered with the whole file.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

namespace ebm {

struct ServerOptions {
  std::string web_dir;
  std::string models_dir;
  std::string host = "127.0.0.1";
  int port = 8080;                          // 0 picks a free port (see HttpServer::bind)
  std::string publish_token;                // empty: publishing is refused with 403
  uint64_t max_upload_bytes = 64ull << 20;  // larger publish bodies get 413
  FILE* log = stderr;                       // access log and notices; nullptr for none
  // Slow clients (see gated_server.h): a request header must be complete within
  // header_timeout_ms of the connection (or of the previous response); at most max_connections
  // wait for one at a time; `workers` threads run the handlers.
  int header_timeout_ms = 10000;
  int workers = 8;
  size_t max_connections = 4096;
};

class HttpServer {
 public:
  // Checks both folders exist (throws ebm::Error naming the one that does not) and writes the
  // models folder's index.json if it is out of date (a read-only folder only earns a notice).
  explicit HttpServer(ServerOptions options);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds the listening socket and returns the port (the chosen one when options.port is 0).
  // Throws ebm::Error if the address cannot be bound.
  int bind();
  // Serves until stop(); returns false if the listener failed.
  bool run();
  // From any thread (a signal-waiting thread, a test): finishes and makes run() return.
  void stop();
  bool running() const;

  // Answers one raw HTTP/1.1 request (header and body bytes) without a socket, exactly as a
  // connection would be answered, and returns the raw response: for the fuzz target and tests.
  std::string answer(const std::string& raw_request);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ebm
