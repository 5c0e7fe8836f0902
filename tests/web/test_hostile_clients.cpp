// ebm-serve against clients that try to take it down or make it do too much: idle and slowloris
// connections, endless or huge headers, Range amplification, unauthenticated uploads, paths that
// are not UTF-8. Raw sockets throughout, so every byte is the test's own.
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "gated_server.h"
#include "web_test_util.h"

namespace ebm {
namespace {

using nlohmann::json;
using Clock = std::chrono::steady_clock;
using test::RunningServer;
using test::TempDir;

constexpr const char* kToken = "correct-horse-battery-staple";

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// A connected socket that gives up reading after `timeout_s`.
int connect_to(int port, double timeout_s = 5) { return test::connect_loopback(port, timeout_s); }

void send_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    const ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return;
    done += size_t(n);
  }
}

// Reads until the peer closes or the socket's timeout passes; `closed` says which.
std::string read_until_close(int fd, bool* closed = nullptr) {
  std::string all;
  char buf[65536];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) all.append(buf, size_t(n));
  if (closed) *closed = n == 0;
  return all;
}

// Sends `request` on a fresh connection while reading the answer (the server may answer and close
// before the request is all sent) and returns what came back before the close.
std::string send_while_reading(int port, const std::string& request) {
  const int fd = connect_to(port);
  std::thread writer([&] { send_all(fd, request); });
  const std::string got = read_until_close(fd);
  ::shutdown(fd, SHUT_RDWR);
  writer.join();
  ::close(fd);
  return got;
}

int status_of(const std::string& response) {
  return response.size() > 12 ? std::atoi(response.c_str() + 9) : 0;
}

std::string body_of(const std::string& response) {
  const size_t split = response.find("\r\n\r\n");
  return split == std::string::npos ? "" : response.substr(split + 4);
}

struct Site {
  TempDir root{"root"};
  std::string web = root / "web";
  std::string models = root / "models";
  std::string model = test::model_bytes(21, "hostile");
  Site() {
    test::write_text(web + "/index.html", "<!doctype html><title>ebm</title>");
    test::write_text(models + "/bridges.safetensors", model);
  }
  ServerOptions options() const {
    ServerOptions o;
    o.web_dir = web;
    o.models_dir = models;
    o.publish_token = kToken;
    o.log = nullptr;
    return o;
  }
};

// One GET /health on a fresh connection: the status and the seconds it took.
std::pair<int, double> timed_health(int port) {
  const auto t0 = Clock::now();
  const int fd = connect_to(port, 3);
  if (fd < 0) return {0, seconds_since(t0)};
  send_all(fd, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  const std::string r = read_until_close(fd);
  ::close(fd);
  return {status_of(r), seconds_since(t0)};
}

TEST(HostileClients, TwoHundredIdleAndTwoHundredSlowlorisConnectionsDoNotDelayAHealthCheck) {
  rlimit files{};
  ::getrlimit(RLIMIT_NOFILE, &files);
  if (files.rlim_cur < 2048 && files.rlim_max >= 2048) {
    files.rlim_cur = 2048;
    ::setrlimit(RLIMIT_NOFILE, &files);
  }
  Site site;
  RunningServer srv(site.options());
  std::vector<int> idle, slow;
  const auto t_connect = Clock::now();
  for (int i = 0; i < 200; ++i) idle.push_back(connect_to(srv.port()));
  for (int i = 0; i < 200; ++i) {
    slow.push_back(connect_to(srv.port()));
    send_all(slow.back(), "GET / HTTP/1.1\r\nHost: x\r\n");
  }
  const double connect_s = seconds_since(t_connect);
  for (int fd : idle) ASSERT_GE(fd, 0);
  for (int fd : slow) ASSERT_GE(fd, 0);
  // The slow clients keep sending a header line every 0.5 s, never the blank line.
  std::atomic<bool> done{false};
  std::thread drip([&] {
    for (int k = 0; !done; ++k) {
      for (int fd : slow) send_all(fd, "X-Drip-" + std::to_string(k) + ": 1\r\n");
      for (int i = 0; i < 5 && !done; ++i)
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  int answered = 0;
  double worst = 0;
  for (int i = 0; i < 8; ++i) {
    const auto [status, secs] = timed_health(srv.port());
    if (status == 200 && secs < 1.0) ++answered;
    worst = std::max(worst, secs);
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  done = true;
  drip.join();
  EXPECT_EQ(answered, 8) << "slowest GET /health took " << worst << " s (limit 1 s)";
  std::printf("400 hostile connections opened in %.2f s; slowest of 8 GET /health: %.3f s\n",
              connect_s, worst);
  for (int fd : idle) ::close(fd);
  for (int fd : slow) ::close(fd);
}

TEST(HostileClients, BeyondTheConnectionCapTheLongestWaitingIsClosed) {
  Site site;
  ServerOptions opt = site.options();
  opt.max_connections = 16;
  RunningServer srv(opt);
  std::vector<int> fds;
  for (int i = 0; i < 24; ++i) {
    fds.push_back(connect_to(srv.port(), 0.2));
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // a clear order of arrival
  }
  // The health check is the 25th connection: 9 had to go, the oldest.
  const auto [status, secs] = timed_health(srv.port());
  EXPECT_EQ(status, 200);
  EXPECT_LT(secs, 1.0);
  int closed_old = 0, closed_new = 0;
  for (size_t i = 0; i < fds.size(); ++i) {
    bool closed = false;
    read_until_close(fds[i], &closed);
    (i < 9 ? closed_old : closed_new) += closed ? 1 : 0;
    ::close(fds[i]);
  }
  EXPECT_EQ(closed_old, 9) << "the 9 oldest connections should have been closed";
  EXPECT_EQ(closed_new, 0) << "the newest 15 should still be open";
}

TEST(HostileClients, AHeaderNotCompleteWithinTheDeadlineGets408AndIsClosed) {
  Site site;
  ServerOptions opt = site.options();
  opt.header_timeout_ms = 1000;
  RunningServer srv(opt);
  const int fd = connect_to(srv.port(), 0.3);
  const auto t0 = Clock::now();
  send_all(fd, "GET / HTTP/1.1\r\nHost: x\r\n");
  std::string got;
  bool closed = false;
  // A line every 0.3 s for up to 5 s: without a deadline the server would wait all along.
  for (int k = 0; k < 16 && !closed; ++k) {
    send_all(fd, "X-Drip: " + std::to_string(k) + "\r\n");
    got += read_until_close(fd, &closed);
  }
  ::close(fd);
  const double secs = seconds_since(t0);
  EXPECT_TRUE(closed) << "still open after " << secs << " s";
  EXPECT_EQ(status_of(got), 408) << got;
  EXPECT_LT(secs, 2.5);
  EXPECT_NO_THROW(json::parse(body_of(got)).at("error"));
}

TEST(HostileClients, TooManyHeaderLinesGet431) {
  Site site;
  RunningServer srv(site.options());
  std::string req = "GET /health HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 20000; ++i) req += "X-" + std::to_string(i) + ": y\r\n";
  req += "\r\n";
  const std::string got = send_while_reading(srv.port(), req);
  EXPECT_EQ(status_of(got), 431) << got.substr(0, 200);
  EXPECT_NE(json::parse(body_of(got)).at("error").get<std::string>().find("100 lines"),
            std::string::npos);
}

TEST(HostileClients, AHeaderOverItsByteLimitGets431) {
  Site site;
  RunningServer srv(site.options());
  std::string req = "GET /health HTTP/1.1\r\nHost: x\r\n";
  for (int i = 0; i < 8; ++i)
    req += "X-Big-" + std::to_string(i) + ": " + std::string(8000, 'a') + "\r\n";
  req += "\r\n";
  const std::string got = send_while_reading(srv.port(), req);
  EXPECT_EQ(status_of(got), 431) << got.substr(0, 200);
}

TEST(HostileClients, ManyRangesGetTheWholeFileOnce) {
  Site site;
  RunningServer srv(site.options());
  std::string ranges = "bytes=0-";
  for (int i = 0; i < 999; ++i) ranges += ",0-";
  for (const std::string path : {"/models/bridges.safetensors", "/no-such-file"}) {
    const test::RawResponse r =
        test::raw_request(srv.port(), "GET " + path + " HTTP/1.1", "Range: " + ranges + "\r\n");
    if (path == "/no-such-file") {
      EXPECT_EQ(r.status, 404);
      EXPECT_LT(r.body.size(), 1000u) << "an error body repeated per range";
    } else {
      EXPECT_EQ(r.status, 200) << r.head;
      EXPECT_EQ(r.body.size(), site.model.size());
      EXPECT_TRUE(r.body == site.model);
    }
  }
  // One range is still honoured.
  const test::RawResponse one = test::raw_request(
      srv.port(), "GET /models/bridges.safetensors HTTP/1.1", "Range: bytes=0-9\r\n");
  EXPECT_EQ(one.status, 206);
  EXPECT_EQ(one.body, site.model.substr(0, 10));
  const test::RawResponse past = test::raw_request(
      srv.port(), "GET /models/bridges.safetensors HTTP/1.1", "Range: bytes=99999999-\r\n");
  EXPECT_EQ(past.status, 416);
  EXPECT_NO_THROW(json::parse(past.body).at("error")) << past.body;
}

TEST(HostileClients, AnUploadWithoutTheTokenIsRefusedBeforeItsBodyIsSent) {
  Site site;
  RunningServer srv(site.options());
  struct Case {
    std::string auth;
    std::string extra;
    int status;
  };
  const std::vector<Case> cases = {
      {"", "", 401},
      {"Authorization: Bearer wrong\r\n", "", 401},
      {"Authorization: Bearer wrong\r\n", "Expect: 100-continue\r\n", 401},
      {std::string("Authorization: Bearer ") + kToken + "\r\n", "Content-Length: 999999999999\r\n",
       413},
  };
  for (const Case& c : cases) {
    const int fd = connect_to(srv.port(), 1.5);
    const auto t0 = Clock::now();
    const std::string length =
        c.extra.find("Content-Length") == std::string::npos ? "Content-Length: 62914560\r\n" : "";
    // The header of a 60 MiB upload, and not one byte of its body.
    send_all(fd,
             "PUT /api/models/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n" +
                 c.auth + c.extra + length + "\r\n");
    bool closed = false;
    const std::string got = read_until_close(fd, &closed);
    ::close(fd);
    EXPECT_EQ(status_of(got), c.status) << c.auth << c.extra << got.substr(0, 300);
    EXPECT_TRUE(closed) << "the connection must close: the unread body is not a request";
    EXPECT_LT(seconds_since(t0), 1.0);
  }
}

TEST(HostileClients, AClientStillSendingARefusedBodyCanFinishItAndReadTheRefusal) {
  // Most clients send a whole upload before reading. The server has answered 401 at once; it
  // must keep reading (and discarding) while the body still comes, not close the connection,
  // which would make the client's next send fail with a reset (and, across a network, lose the
  // 401 with it).
  Site site;
  RunningServer srv(site.options());
  const int fd = connect_to(srv.port(), 5);
  const size_t total = 4u << 20, chunk = 64u << 10;
  send_all(fd, "PUT /api/models/x HTTP/1.1\r\nHost: x\r\nContent-Length: " + std::to_string(total) +
                   "\r\n\r\n");
  const std::string piece(chunk, 'm');
  size_t sent = 0;
  while (sent < total) {
    const ssize_t n = ::send(fd, piece.data(), piece.size(), MSG_NOSIGNAL);
    if (n <= 0) break;
    sent += size_t(n);
    std::this_thread::sleep_for(std::chrono::milliseconds(3000 * chunk / total));
  }
  EXPECT_EQ(sent, total) << "the server stopped reading after " << sent
                         << " bytes: " << std::strerror(errno);
  bool closed = false;
  const std::string got = read_until_close(fd, &closed);
  ::close(fd);
  EXPECT_EQ(status_of(got), 401) << got.substr(0, 200);
  EXPECT_TRUE(closed);
}

TEST(HostileClients, ABodyOnAnyOtherRequestIsRefusedUnread) {
  Site site;
  RunningServer srv(site.options());
  const int fd = connect_to(srv.port(), 1.5);
  send_all(fd, "POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 62914560\r\n\r\n");
  bool closed = false;
  const std::string got = read_until_close(fd, &closed);
  ::close(fd);
  EXPECT_EQ(status_of(got), 405) << got;
  EXPECT_TRUE(closed);
}

TEST(HostileClients, InvalidUtf8InThePathGetsAJsonError) {
  Site site;
  RunningServer srv(site.options());
  for (const char* path : {"/%ff", "/models/%ff%fe.safetensors", "/%c3%28/x"}) {
    const test::RawResponse r =
        test::raw_request(srv.port(), std::string("GET ") + path + " HTTP/1.1");
    EXPECT_EQ(r.status, 404) << path << ": " << r.body;
    json body;
    ASSERT_NO_THROW(body = json::parse(r.body)) << path << ": " << r.body;
    EXPECT_TRUE(body.contains("error"));
  }
}

TEST(HostileClients, KeepAliveAndPipelinedRequestsAreStillAnswered) {
  Site site;
  RunningServer srv(site.options());
  const int fd = connect_to(srv.port(), 2);
  send_all(fd,
           "GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /index.html HTTP/1.1\r\nHost: x\r\n\r\n");
  std::string got;
  char buf[4096];
  while (got.find("<title>ebm</title>") == std::string::npos) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, size_t(n));
  }
  // The same connection serves a third request after a pause.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  send_all(fd, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  got += read_until_close(fd);
  ::close(fd);
  size_t oks = 0;
  for (size_t p = 0; (p = got.find("HTTP/1.1 200", p)) != std::string::npos; ++p) ++oks;
  EXPECT_EQ(oks, 3u) << got;
}

TEST(HeaderScan, FindsTheBlankLineCountsLinesAndSeesBodies) {
  const std::string get = "GET / HTTP/1.1\r\nHost: x\r\n\r\nrest";
  HeaderScan s = scan_request_header(get.data(), get.size(), 1000, 10);
  EXPECT_EQ(s.status, HeaderScan::kComplete);
  EXPECT_EQ(s.header_end, get.size() - 4);
  EXPECT_FALSE(s.has_body);
  const std::string put = "PUT /a HTTP/1.1\r\ncontent-length: 10\r\n\r\n";
  EXPECT_TRUE(scan_request_header(put.data(), put.size(), 1000, 10).has_body);
  const std::string zero = "PUT /a HTTP/1.1\r\nContent-Length: 000\r\n\r\n";
  EXPECT_FALSE(scan_request_header(zero.data(), zero.size(), 1000, 10).has_body);
  const std::string chunked = "PUT /a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
  EXPECT_TRUE(scan_request_header(chunked.data(), chunked.size(), 1000, 10).has_body);
  const std::string partial = "GET / HTTP/1.1\r\nHost: x\r\n";
  EXPECT_EQ(scan_request_header(partial.data(), partial.size(), 1000, 10).status,
            HeaderScan::kIncomplete);
  EXPECT_EQ(scan_request_header(partial.data(), partial.size(), 20, 10).status,
            HeaderScan::kTooLarge);
  EXPECT_EQ(scan_request_header(partial.data(), partial.size(), 1000, 2).status,
            HeaderScan::kTooLarge);
}

}  // namespace
}  // namespace ebm
