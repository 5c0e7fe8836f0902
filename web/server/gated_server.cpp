#include "gated_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <map>

#include "ebm/error.h"

namespace ebm {

namespace {

using Clock = std::chrono::steady_clock;

// After the last response on a connection that may have unread input (a refused upload), the gate
// reads and discards what still comes, so the client receives the response instead of a reset:
// until the client stops (EOF, or nothing for kLingerQuietMs), at most kLingerMaxMs in all
// (nginx's lingering_timeout and lingering_time).
constexpr int kLingerQuietMs = 5000;
constexpr int kLingerMaxMs = 30000;

const char* status_text(int status) {
  switch (status) {
    case 408:
      return "Request Timeout";
    case 431:
      return "Request Header Fields Too Large";
    default:
      return "Error";
  }
}

// httplib's accept loop hands each connection to its task queue; this one runs the task at once,
// on the accept thread, where GatedServer::process_and_close_socket passes it to the gate.
class InlineQueue : public httplib::TaskQueue {
 public:
  void enqueue(std::function<void()> fn) override { fn(); }
  void shutdown() override {}
};

bool ascii_iequals(const char* a, size_t n, const char* b) {
  if (std::strlen(b) != n) return false;
  for (size_t i = 0; i < n; ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
    if (c != b[i]) return false;
  }
  return true;
}

// The bytes received so far plus the socket: what httplib's process_request reads from.
class GateStream : public httplib::Stream {
 public:
  GateStream(int fd, std::string pending, time_t read_s, time_t read_us, time_t write_s,
             time_t write_us)
      : fd_(fd),
        pending_(std::move(pending)),
        read_ms_(int(read_s * 1000 + read_us / 1000)),
        write_ms_(int(write_s * 1000 + write_us / 1000)) {}

  bool is_readable() const override { return pos_ < pending_.size() || wait(POLLIN, read_ms_); }
  bool is_writable() const override { return wait(POLLOUT, write_ms_); }

  ssize_t read(char* ptr, size_t size) override {
    if (pos_ < pending_.size()) {
      const size_t n = std::min(size, pending_.size() - pos_);
      std::memcpy(ptr, pending_.data() + pos_, n);
      pos_ += n;
      return ssize_t(n);
    }
    if (!wait(POLLIN, read_ms_)) return -1;
    for (;;) {
      const ssize_t n = ::recv(fd_, ptr, size, 0);
      if (n < 0 && errno == EINTR) continue;
      return n;
    }
  }

  ssize_t write(const char* ptr, size_t size) override {
    if (!wait(POLLOUT, write_ms_)) return -1;
    for (;;) {
      const ssize_t n = ::send(fd_, ptr, size, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      return n;
    }
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0) name(a, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    if (::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0) name(a, ip, port);
  }
  socket_t socket() const override { return fd_; }

  // What was received but not consumed by this request: the start of the next one.
  std::string unread() const { return pending_.substr(std::min(pos_, pending_.size())); }

 private:
  bool wait(short events, int ms) const {
    pollfd p{fd_, events, 0};
    for (;;) {
      const int r = ::poll(&p, 1, ms);
      if (r < 0 && errno == EINTR) continue;
      return r > 0 && (p.revents & (events | POLLHUP)) != 0;
    }
  }
  static void name(const sockaddr_storage& a, std::string& ip, int& port) {
    char buf[INET6_ADDRSTRLEN] = {};
    if (a.ss_family == AF_INET) {
      const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
      ::inet_ntop(AF_INET, &v4->sin_addr, buf, sizeof buf);
      port = ntohs(v4->sin_port);
    } else if (a.ss_family == AF_INET6) {
      const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
      ::inet_ntop(AF_INET6, &v6->sin6_addr, buf, sizeof buf);
      port = ntohs(v6->sin6_port);
    }
    ip = buf;
  }

  int fd_;
  std::string pending_;
  size_t pos_ = 0;
  int read_ms_, write_ms_;
};

// A request held in memory (GatedServer::answer): reads end at its last byte.
class MemoryStream : public httplib::Stream {
 public:
  explicit MemoryStream(const std::string& in) : in_(in) {}
  bool is_readable() const override { return pos_ < in_.size(); }
  bool is_writable() const override { return true; }
  ssize_t read(char* ptr, size_t size) override {
    const size_t n = std::min(size, in_.size() - pos_);
    std::memcpy(ptr, in_.data() + pos_, n);
    pos_ += n;
    return ssize_t(n);
  }
  ssize_t write(const char* ptr, size_t size) override {
    out_.append(ptr, size);
    return ssize_t(size);
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1";
    port = 1;
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    ip = "127.0.0.1";
    port = 2;
  }
  socket_t socket() const override { return -1; }
  const std::string& output() const { return out_; }

 private:
  const std::string& in_;
  size_t pos_ = 0;
  std::string out_;
};

// Several ranges (overlapping or not) could ask for the file many times over: they are answered
// with the whole file, as RFC 9110 allows. One range is never more than the file.
void limit_ranges(httplib::Request& req) {
  if (req.ranges.size() > 1) {
    req.ranges.clear();
    req.headers.erase("Range");
  }
}

}  // namespace

HeaderScan scan_request_header(const char* data, size_t size, size_t max_bytes, size_t max_lines) {
  HeaderScan s;
  size_t line_start = 0, lines = 0;
  const size_t limit = std::min(size, max_bytes);
  for (size_t i = 0; i < limit; ++i) {
    if (data[i] != '\n') continue;
    const char* line = data + line_start;
    const size_t len = i + 1 - line_start;  // with its terminator
    // httplib ends the header at the first line that is exactly CRLF (after the request line).
    if (lines > 0 && len == 2 && line[0] == '\r') {
      s.status = HeaderScan::kComplete;
      s.header_end = i + 1;
      return s;
    }
    if (++lines >= max_lines) {
      s.status = HeaderScan::kTooLarge;
      return s;
    }
    if (lines > 1) {
      const char* colon = static_cast<const char*>(std::memchr(line, ':', len));
      if (colon) {
        const size_t key_len = size_t(colon - line);
        const char* v = colon + 1;
        const char* end = line + len;
        while (v < end && (*v == ' ' || *v == '\t')) ++v;
        if (ascii_iequals(line, key_len, "transfer-encoding")) s.has_body = true;
        if (ascii_iequals(line, key_len, "content-length"))
          for (const char* q = v; q < end && *q != '\r' && *q != '\n'; ++q)
            if (*q != '0' && *q != ' ' && *q != '\t') s.has_body = true;  // not "0"
      }
    }
    line_start = i + 1;
  }
  if (size >= max_bytes) s.status = HeaderScan::kTooLarge;
  return s;
}

struct GatedServer::Conn {
  int fd = -1;
  std::string buf;
  size_t served = 0;
  bool draining = false;  // response sent, reading and discarding until EOF or the deadline
  Clock::time_point deadline;
  Clock::time_point linger_end;  // draining: the latest the deadline may move to
};

GatedServer::GatedServer(GateLimits limits) : limits_(limits) {
  new_task_queue = [] { return new InlineQueue; };
  set_keep_alive_max_count(limits_.keep_alive_max);
  set_keep_alive_timeout(std::max(1, limits_.header_timeout_ms / 1000));
  error_body_ = [](int, const std::string& m) { return "{\"error\": \"" + m + "\"}\n"; };
}

GatedServer::~GatedServer() {
  stop_gated();
}

void GatedServer::set_gate_error_body(
    std::function<std::string(int status, const std::string& message)> f) {
  error_body_ = std::move(f);
}

bool GatedServer::listen_gated() {
  {
    std::lock_guard<std::mutex> lock(stop_mu_);
    if (stopped_) return true;
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epoll_fd_ < 0 || wake_fd_ < 0) throw Error("cannot create the server's epoll instance");
    // Every held connection is a descriptor: stay below the process's limit, leaving room for
    // the files being served, so that the oldest connection is closed before accept fails.
    rlimit files{};
    if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur != RLIM_INFINITY)
      limits_.max_connections = std::min<size_t>(
          limits_.max_connections, size_t(std::max<rlim_t>(files.rlim_cur, 128) - 96));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.fd = wake_fd_;
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, wake_fd_, &ev);
    gate_ = std::thread([this] { gate_loop(); });
    for (int i = 0; i < std::max(1, limits_.workers); ++i)
      workers_.emplace_back([this] { worker_loop(); });
    started_ = true;
  }
  // httplib listens with a backlog of 5; connections arriving faster than one accept loop turn
  // (a burst of clients) would wait for SYN retransmits. Listening again raises it.
  if (const socket_t sock = svr_sock_; sock != INVALID_SOCKET) ::listen(sock, SOMAXCONN);
  const bool ok = listen_after_bind();
  {
    // Closed by now, by httplib's stop() or by its accept loop after an error (which leaves the
    // number in svr_sock_): forgotten, so that stop_gated does not close it a second time.
    std::lock_guard<std::mutex> lock(stop_mu_);
    svr_sock_ = INVALID_SOCKET;
  }
  stop_gated();
  return ok;
}

void GatedServer::stop_gated() {
  std::lock_guard<std::mutex> lock(stop_mu_);
  if (stopped_) return;
  stopped_ = true;
  stop();
  // httplib's stop() closes the listener only once its accept loop runs: a stop between the
  // bind and that loop left the loop, when it came, waiting forever. Closed here, the loop ends
  // as soon as it starts.
  if (const socket_t sock = svr_sock_.exchange(INVALID_SOCKET); sock != INVALID_SOCKET) {
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
  }
  if (!started_) return;
  {
    std::lock_guard<std::mutex> admit_lock(admit_mu_);
    stopping_ = true;  // admit() checks it under this lock: nothing is added after the sweep
  }
  // A worker checks stopping_ under ready_mu_ and then sleeps; taking that lock once here means
  // it has either seen the flag or is asleep when the notification comes (without it, a worker
  // between the check and the sleep missed the wake-up and stop hung on its join).
  { std::lock_guard<std::mutex> ready_lock(ready_mu_); }
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
  ready_cv_.notify_all();
  if (gate_.joinable()) gate_.join();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  {
    std::lock_guard<std::mutex> ready_lock(ready_mu_);
    for (Ready& r : ready_) ::close(r.fd);
    ready_.clear();
  }
  {
    // The accept thread may still be handing over a connection accepted just before stop().
    std::lock_guard<std::mutex> admit_lock(admit_mu_);
    for (auto& c : admitted_) ::close(c->fd);
    admitted_.clear();
  }
  ::close(epoll_fd_);
  ::close(wake_fd_);
}

bool GatedServer::process_and_close_socket(socket_t sock) {
  admit(sock, std::string(), 0);
  return true;
}

void GatedServer::admit(int fd, std::string pending, size_t served) {
  auto c = std::make_unique<Conn>();
  c->fd = fd;
  c->buf = std::move(pending);
  c->served = served;
  c->deadline = Clock::now() + std::chrono::milliseconds(limits_.header_timeout_ms);
  {
    std::lock_guard<std::mutex> lock(admit_mu_);
    if (stopping_) {
      ::close(fd);
      return;
    }
    admitted_.push_back(std::move(c));
  }
  const uint64_t one = 1;
  (void)!::write(wake_fd_, &one, sizeof one);
}

std::string GatedServer::gate_response(int status, const std::string& message) const {
  const std::string body = error_body_(status, message);
  return "HTTP/1.1 " + std::to_string(status) + " " + status_text(status) +
         "\r\nContent-Type: application/json; charset=utf-8\r\n"
         "Cache-Control: no-cache\r\nConnection: close\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

void GatedServer::refuse(int fd, int status, const std::string& message) {
  const std::string all = gate_response(status, message);
  (void)!::send(fd, all.data(), all.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

std::string GatedServer::answer(const std::string& request) {
  const HeaderScan s = scan_request_header(request.data(), request.size(), limits_.max_header_bytes,
                                           limits_.max_header_lines);
  if (s.status == HeaderScan::kTooLarge) return gate_response(431, "request header too large");
  if (s.status == HeaderScan::kIncomplete) return gate_response(408, "request header not complete");
  MemoryStream strm(request);
  bool closed = false;
  process_request(strm, true, closed, limit_ranges);
  return strm.output();
}

void GatedServer::gate_loop() {
  std::map<int, std::unique_ptr<Conn>> conns;
  auto forget = [&](int fd) {
    ::epoll_ctl(epoll_fd_, EPOLL_CTL_DEL, fd, nullptr);
    conns.erase(fd);
  };
  auto close_conn = [&](int fd) {
    forget(fd);
    ::close(fd);
  };
  auto linger = [&](Conn& c) {
    ::shutdown(c.fd, SHUT_WR);
    c.draining = true;
    c.buf.clear();
    c.deadline = Clock::now() + std::chrono::milliseconds(kLingerQuietMs);
    c.linger_end = Clock::now() + std::chrono::milliseconds(kLingerMaxMs);
  };
  // Returns false when the connection left the gate (dispatched or closed).
  auto examine = [&](Conn& c) {
    const HeaderScan s = scan_request_header(c.buf.data(), c.buf.size(), limits_.max_header_bytes,
                                             limits_.max_header_lines);
    if (s.status == HeaderScan::kIncomplete) return true;
    if (s.status == HeaderScan::kTooLarge) {
      refuse(c.fd, 431,
             "request header too large: the limit is " + std::to_string(limits_.max_header_bytes) +
                 " bytes and " + std::to_string(limits_.max_header_lines) + " lines");
      linger(c);
      return true;
    }
    Ready r{c.fd, std::move(c.buf), c.served, s.has_body};
    forget(r.fd);
    {
      std::lock_guard<std::mutex> lock(ready_mu_);
      ready_.push_back(std::move(r));
    }
    ready_cv_.notify_one();
    return false;
  };

  std::vector<epoll_event> events(256);
  std::vector<char> chunk(16384);
  auto last_sweep = Clock::now();
  while (!stopping_) {
    const int n = ::epoll_wait(epoll_fd_, events.data(), int(events.size()), 100);
    for (int i = 0; i < n; ++i) {
      const int fd = events[size_t(i)].data.fd;
      if (fd == wake_fd_) {
        uint64_t v;
        (void)!::read(wake_fd_, &v, sizeof v);
        std::vector<std::unique_ptr<Conn>> fresh;
        {
          std::lock_guard<std::mutex> lock(admit_mu_);
          fresh.swap(admitted_);
        }
        for (auto& c : fresh) {
          while (conns.size() >= limits_.max_connections && !conns.empty()) {
            // Full: the connection closest to its deadline has had the longest to speak.
            auto oldest = conns.begin();
            for (auto it = conns.begin(); it != conns.end(); ++it)
              if (it->second->deadline < oldest->second->deadline) oldest = it;
            close_conn(oldest->first);
          }
          Conn& ref = *c;
          const int cfd = c->fd;
          conns[cfd] = std::move(c);
          epoll_event ev{};
          ev.events = EPOLLIN | EPOLLRDHUP;
          ev.data.fd = cfd;
          if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, cfd, &ev) != 0) {
            conns.erase(cfd);
            ::close(cfd);
            continue;
          }
          if (!ref.buf.empty()) examine(ref);  // a pipelined request may be whole already
        }
        continue;
      }
      auto it = conns.find(fd);
      if (it == conns.end()) continue;
      Conn& c = *it->second;
      bool closed = false;
      for (;;) {
        const ssize_t got = ::recv(fd, chunk.data(), chunk.size(), MSG_DONTWAIT);
        if (got > 0) {
          if (c.draining)
            c.deadline =
                std::min(Clock::now() + std::chrono::milliseconds(kLingerQuietMs), c.linger_end);
          else
            c.buf.append(chunk.data(), size_t(got));
          if (c.buf.size() >= limits_.max_header_bytes) break;
          continue;
        }
        if (got < 0 && errno == EINTR) continue;
        closed = got == 0 || (errno != EAGAIN && errno != EWOULDBLOCK);
        break;
      }
      if (!c.draining && !c.buf.empty()) {
        if (!examine(c)) continue;
      }
      if (closed) close_conn(fd);
    }
    const auto now = Clock::now();
    if (now - last_sweep >= std::chrono::milliseconds(100)) {
      last_sweep = now;
      std::vector<int> late;
      for (auto& [fd, c] : conns)
        if (c->deadline <= now) late.push_back(fd);
      for (int fd : late) {
        Conn& c = *conns[fd];
        if (!c.draining && !c.buf.empty()) {
          refuse(fd, 408,
                 "request header not complete within " + std::to_string(limits_.header_timeout_ms) +
                     " ms");
        }
        close_conn(fd);  // an idle keep-alive connection just closes
      }
    }
  }
  for (auto& [fd, c] : conns) ::close(fd);
}

void GatedServer::worker_loop() {
  for (;;) {
    Ready r;
    {
      std::unique_lock<std::mutex> lock(ready_mu_);
      ready_cv_.wait(lock, [&] { return stopping_ || !ready_.empty(); });
      if (stopping_) return;
      r = std::move(ready_.front());
      ready_.pop_front();
    }
    serve(std::move(r));
  }
}

void GatedServer::serve(Ready r) {
  GateStream strm(r.fd, std::move(r.bytes), read_timeout_sec_, read_timeout_usec_,
                  write_timeout_sec_, write_timeout_usec_);
  const bool close_after = r.has_body || r.served + 1 >= limits_.keep_alive_max || stopping_;
  bool closed = false;
  const bool ok = process_request(strm, close_after, closed, limit_ranges);
  if (!ok || closed || close_after) {
    // Lingering close in the gate: what the client still sends (an unread body) is discarded
    // until it stops (see kLingerQuietMs), so it gets the response rather than a reset.
    ::shutdown(r.fd, SHUT_WR);
    if (stopping_) {
      ::close(r.fd);
      return;
    }
    auto c = std::make_unique<Conn>();
    c->fd = r.fd;
    c->draining = true;
    c->deadline = Clock::now() + std::chrono::milliseconds(kLingerQuietMs);
    c->linger_end = Clock::now() + std::chrono::milliseconds(kLingerMaxMs);
    {
      std::lock_guard<std::mutex> lock(admit_mu_);
      if (stopping_) {
        ::close(r.fd);
        return;
      }
      admitted_.push_back(std::move(c));
    }
    const uint64_t one = 1;
    (void)!::write(wake_fd_, &one, sizeof one);
    return;
  }
  admit(r.fd, strm.unread(), r.served + 1);
}

}  // namespace ebm
