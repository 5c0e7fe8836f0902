#include "distributed.h"

#include <netdb.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#if EBM_HAVE_GLOO
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#endif

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <mutex>
#include <thread>

namespace ebm::train {

namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

// How long every rank is waited for at the start (torchrun's default rendezvous timeout), and
// how often the missing ones are named meanwhile.
constexpr auto kJoinTimeout = std::chrono::minutes(15);
constexpr auto kJoinReport = std::chrono::seconds(30);
// The watchdog's beat, and how often it looks while the main thread waits on it.
constexpr auto kBeat = milliseconds(250);
constexpr auto kBeatUrgent = milliseconds(20);
// After a collective failed: a rank silent this long is the one at fault (eight beats), and the
// diagnosis waits at most this long for one to fall silent.
constexpr auto kSilent = std::chrono::seconds(2);
constexpr auto kDiagnosis = std::chrono::seconds(5);
// Gradient buckets of a quarter MiB: the unet preset's 1 MB of gradients leaves in four, the
// paper network's 3.3 MB in five (its 2.4 MB dense layer, next to the output, alone and first),
// each while the backward pass still computes the ones after it. Smaller buckets would pay
// Gloo's fixed cost per all-reduce (about a millisecond on loopback here) more often.
constexpr size_t kBucketBytes = size_t(1) << 18;

#if EBM_HAVE_GLOO
double seconds(Clock::duration d) {
  return std::chrono::duration<double>(d).count();
}

std::string fixed1(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

std::string rank_list(const std::vector<int>& ranks) {
  std::string s = ranks.size() == 1 ? "rank " : "ranks ";
  for (size_t i = 0; i < ranks.size(); ++i) s += (i ? ", " : "") + std::to_string(ranks[i]);
  return s;
}

#endif

int int_setting(const DistSetting& s, long lo, long hi, const std::string& range) {
  errno = 0;
  char* end = nullptr;
  const long v = std::strtol(s.value.c_str(), &end, 10);
  if (s.value.empty() || *end != '\0' || errno != 0)
    throw Error(s.source + " '" + s.value + "' is not a whole number (" + range + ")");
  if (v < lo || v > hi) throw Error(s.source + " " + s.value + " is out of range (" + range + ")");
  return int(v);
}

#if EBM_HAVE_GLOO
std::vector<uint8_t> bytes_of(const std::string& s) {
  return std::vector<uint8_t>(s.begin(), s.end());
}

std::string text_of(const std::vector<uint8_t>& b) {
  return std::string(b.begin(), b.end());
}

std::string key(const char* prefix, int rank) {
  return std::string(prefix) + std::to_string(rank);
}

// This machine's address on the route to `host` (a UDP socket connected there and asked for its
// own end; no packet is sent), numeric; empty if there is no route.
std::string route_address(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host.c_str(), "9", &hints, &res) != 0) return {};
  std::string out;
  for (addrinfo* p = res; p && out.empty(); p = p->ai_next) {
    const int fd = ::socket(p->ai_family, SOCK_DGRAM, 0);
    if (fd < 0) continue;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    char name[NI_MAXHOST];
    if (::connect(fd, p->ai_addr, p->ai_addrlen) == 0 &&
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) == 0 &&
        ::getnameinfo(reinterpret_cast<sockaddr*>(&ss), len, name, sizeof name, nullptr, 0,
                      NI_NUMERICHOST) == 0)
      out = name;
    ::close(fd);
  }
  ::freeaddrinfo(res);
  return out;
}

bool is_loopback(const std::string& addr) {
  return addr.rfind("127.", 0) == 0 || addr == "::1";
}

// The watchdog's view, shared between it and the main thread (under `m`).
struct Watch {
  std::mutex m;
  std::condition_variable cv;
  int self = 0, n = 1;
  std::vector<int64_t> beat, phase;        // each rank's last beat and the phase it has reached
  std::vector<Clock::time_point> changed;  // when its beat last changed
  Clock::time_point last_ok;               // the last round that read every rank
  std::string store_error;                 // the store failed (rank 0's process is gone)
  int64_t my_phase = 0;                    // the phase this rank has reached (wait_for_all)
  int64_t published = 0;                   // the phase the store has from this rank
  bool urgent = false, stop = false;
  c10::intrusive_ptr<c10d::TCPStore> store;  // the watchdog's own connection
};

// Beats `hb/<self>` ("<beat> <phase>") and reads every other rank's until told to stop or the
// store fails. Holds `w` itself, so an abandoned watchdog (blocked on a hung store) stays valid.
void watchdog(std::shared_ptr<Watch> w) {
  int64_t beat = 0;
  std::unique_lock<std::mutex> lk(w->m);
  while (!w->stop) {
    const int64_t phase = w->my_phase;
    lk.unlock();
    std::vector<std::string> seen(size_t(w->n));
    std::string error;
    try {
      w->store->set(key("hb/", w->self),
                    bytes_of(std::to_string(++beat) + " " + std::to_string(phase)));
      for (int r = 0; r < w->n; ++r)
        if (r != w->self) seen[size_t(r)] = text_of(w->store->get(key("hb/", r)));
    } catch (const std::exception& e) {
      error = e.what();
    }
    lk.lock();
    const Clock::time_point now = Clock::now();
    if (!error.empty()) {
      w->store_error = error;
      w->cv.notify_all();
      return;
    }
    w->last_ok = now;
    w->published = phase;
    for (int r = 0; r < w->n; ++r) {
      if (r == w->self) {
        w->changed[size_t(r)] = now;
        continue;
      }
      long long b = 0, p = 0;
      if (std::sscanf(seen[size_t(r)].c_str(), "%lld %lld", &b, &p) != 2) continue;
      if (b != w->beat[size_t(r)]) w->changed[size_t(r)] = now;
      w->beat[size_t(r)] = b;
      w->phase[size_t(r)] = p;
    }
    w->cv.notify_all();
    w->cv.wait_for(lk, w->urgent ? kBeatUrgent : kBeat);
  }
}
#endif  // EBM_HAVE_GLOO

}  // namespace

DistOptions parse_dist_options(
    const std::function<std::optional<DistSetting>(const std::string& name)>& lookup,
    double timeout_s) {
  DistOptions o;
  o.timeout_s = timeout_s;
  const std::optional<DistSetting> rank = lookup("RANK"), world = lookup("WORLD_SIZE");
  if (!rank && !world) return o;
  if (!world)
    throw Error(rank->source + " is " + rank->value +
                " but WORLD_SIZE is not set: set WORLD_SIZE (or --world-size) to the number of "
                "processes of the run");
  o.world_size = int_setting(*world, 1, 1 << 16, "the number of processes, 1 or more");
  if (!rank) {
    if (o.world_size == 1) return o;
    throw Error(world->source + " is " + world->value +
                " but RANK is not set: give each process its own rank, 0 to " +
                std::to_string(o.world_size - 1) + " (RANK or --rank)");
  }
  o.rank = int_setting(*rank, 0, o.world_size - 1,
                       "with WORLD_SIZE " + std::to_string(o.world_size) + " the ranks are 0 to " +
                           std::to_string(o.world_size - 1));
  if (const std::optional<DistSetting> lws = lookup("LOCAL_WORLD_SIZE"))
    o.local_world_size =
        int_setting(*lws, 1, o.world_size, "the processes on this machine, 1 to WORLD_SIZE");
  if (const std::optional<DistSetting> lr = lookup("LOCAL_RANK"))
    o.local_rank = int_setting(*lr, 0, o.world_size - 1, "this process's rank on its machine");
  if (o.local_rank >= o.local_world_size && lookup("LOCAL_WORLD_SIZE"))
    throw Error("LOCAL_RANK " + std::to_string(o.local_rank) + " is out of range for " +
                "LOCAL_WORLD_SIZE " + std::to_string(o.local_world_size));
  if (o.world_size == 1) return o;

  const std::optional<DistSetting> addr = lookup("MASTER_ADDR"), port = lookup("MASTER_PORT");
  if (!addr || addr->value.empty())
    throw Error("WORLD_SIZE is " + std::to_string(o.world_size) +
                " but MASTER_ADDR is not set: give every process rank 0's address as the others "
                "reach it (MASTER_ADDR or --master-addr; 127.0.0.1 on one machine)");
  o.master_addr = addr->value;
  if (!port || port->value.empty())
    throw Error("WORLD_SIZE is " + std::to_string(o.world_size) +
                " but MASTER_PORT is not set: give every process the same free port on rank 0's "
                "machine (MASTER_PORT or --master-port, e.g. 29500)");
  try {
    o.master_port = int_setting(*port, 1, 65535, "a TCP port, 1 to 65535");
  } catch (const Error&) {
    throw Error(port->source + " '" + port->value + "' is not a port number (1 to 65535)");
  }
  if (!(timeout_s > 0)) throw Error("--dist-timeout must be positive");
  return o;
}

uint64_t fingerprint(const std::vector<torch::Tensor>& tensors, uint64_t h) {
  for (const torch::Tensor& t : tensors) {
    const torch::Tensor c = t.detach().cpu().contiguous();
    const uint8_t* p = static_cast<const uint8_t*>(c.data_ptr());
    const size_t n = size_t(c.numel()) * c.element_size();
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 0x100000001b3ull;
  }
  return h;
}

#if EBM_HAVE_GLOO
struct Collective::Impl {
  DistOptions opt;
  milliseconds timeout;
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
  std::shared_ptr<Watch> watch = std::make_shared<Watch>();
  std::thread watchdog_thread;
  bool broken = false, finished = false;

  std::string store_address() const {
    return opt.master_addr + ":" + std::to_string(opt.master_port);
  }

  // The ranks at fault, from the watchdog's view: rank 0 when the store failed or fell silent,
  // else those whose beats stopped `silent` ago or more. Empty if every rank beats.
  std::string silent_ranks(Clock::duration silent) const {
    const Watch& w = *watch;
    const Clock::time_point now = Clock::now();
    if (!w.store_error.empty())
      return opt.rank == 0 ? "the store of this process failed (" + w.store_error + ")"
                           : "rank 0 is gone: its store at " + store_address() +
                                 " closed the connection (" + w.store_error + ")";
    if (now - w.last_ok > silent)
      return "rank 0 does not answer: its store at " + store_address() + " has been silent for " +
             fixed1(seconds(now - w.last_ok)) +
             " s (the process hangs or its machine is unreachable)";
    std::vector<int> ranks;
    double longest = 0;
    for (int r = 0; r < w.n; ++r)
      if (now - w.changed[size_t(r)] > silent) {
        ranks.push_back(r);
        longest = std::max(longest, seconds(now - w.changed[size_t(r)]));
      }
    if (ranks.empty()) return {};
    return rank_list(ranks) + " of " + std::to_string(w.n) + " stopped: no heartbeat for " +
           fixed1(longest) + " s (the process ended, hangs, or its machine is unreachable)";
  }

  // A collective failed: names the rank at fault (waiting up to kDiagnosis for its beats to stop).
  PeerFailure fault(const std::string& what, const std::string& detail) {
    broken = true;
    const Clock::time_point deadline =
        Clock::now() + std::min<Clock::duration>(kDiagnosis, timeout);
    std::unique_lock<std::mutex> lk(watch->m);
    watch->urgent = true;
    watch->cv.notify_all();
    for (;;) {
      const std::string who = silent_ranks(kSilent);
      if (!who.empty())
        return PeerFailure(who + "; rank " + std::to_string(opt.rank) + " stops too (it was " +
                           what + ")");
      if (Clock::now() > deadline) break;
      watch->cv.wait_for(lk, milliseconds(100));
    }
    std::string first_line = detail.substr(0, detail.find('\n'));
    return PeerFailure(what + " failed on rank " + std::to_string(opt.rank) + " (" + first_line +
                       ") while every rank still beats: a network fault, or a rank slower than "
                       "--dist-timeout (" +
                       fixed1(double(timeout.count()) / 1000) + " s)");
  }

  void wait(const c10::intrusive_ptr<c10d::Work>& work, const std::string& what) {
    try {
      work->wait();
    } catch (const std::exception& e) {
      throw fault(what, e.what());
    }
  }

  template <typename Launch>
  void run(const std::string& what, Launch&& launch) {
    c10::intrusive_ptr<c10d::Work> work;
    try {
      work = launch();
    } catch (const std::exception& e) {
      throw fault(what, e.what());
    }
    wait(work, what);
  }

  std::vector<torch::Tensor> allgather(const torch::Tensor& t, const std::string& what) {
    std::vector<std::vector<at::Tensor>> out(1);
    for (int r = 0; r < opt.world_size; ++r) out[0].push_back(torch::empty_like(t));
    std::vector<at::Tensor> in = {t.contiguous()};
    run(what, [&] { return pg->allgather(out, in); });
    return out[0];
  }
};

Collective::Collective(const DistOptions& o) : opt_(o), impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.opt = o;
  m.timeout = milliseconds(int64_t(o.timeout_s * 1000));
  const std::string me = describe();
  const std::string addr = m.store_address();

  // A write to a peer that died raises SIGPIPE, whose default action kills this process before
  // the watchdog can name the dead rank (exit 141 instead of 1 and a message). Ignored, the write
  // fails with EPIPE, the store or Gloo throws, and the fault is diagnosed like any other.
  ::signal(SIGPIPE, SIG_IGN);

  c10d::TCPStoreOptions so;
  so.port = uint16_t(o.master_port);
  so.isServer = o.rank == 0;
  so.waitWorkers = false;
  so.timeout = std::chrono::duration_cast<milliseconds>(kJoinReport);
  if (o.rank != 0) std::cerr << "ebm-train: " << me << ": joining rank 0 at " << addr << "\n";
  const Clock::time_point t0 = Clock::now();
  // A client keeps trying while rank 0 is not up yet (LibTorch retries within each attempt).
  for (;;) {
    try {
      m.store = c10::make_intrusive<c10d::TCPStore>(o.master_addr, so);
      break;
    } catch (const std::exception& e) {
      const std::string why = std::string(e.what()).substr(0, std::string(e.what()).find('\n'));
      if (o.rank == 0)
        throw Error("rank 0 cannot serve the rendezvous store on MASTER_PORT " +
                    std::to_string(o.master_port) + " (" + why +
                    "): choose another MASTER_PORT, the same for every process");
      if (Clock::now() - t0 > kJoinTimeout)
        throw Error("cannot reach rank 0's store at " + addr + " (" + why +
                    "): is rank 0 running, and are MASTER_ADDR and MASTER_PORT the ones it was "
                    "given?");
      std::cerr << "ebm-train: " << me << ": rank 0's store at " << addr << " does not answer yet ("
                << int(seconds(Clock::now() - t0)) << " s)\n";
    }
  }

  // Joining: every rank announces itself, its world size, and beat 0; then waits for the others.
  if (m.store->add(key("rank/", o.rank), 1) > 1)
    throw Error("another process was already started with RANK " + std::to_string(o.rank) +
                "; every process needs its own rank, 0 to " + std::to_string(o.world_size - 1));
  m.store->set(key("world/", o.rank), bytes_of(std::to_string(o.world_size)));
  m.store->set(key("hb/", o.rank), bytes_of("0 0"));
  Clock::time_point last_report = Clock::now();
  for (;;) {
    std::vector<int> missing;
    for (int r = 0; r < o.world_size; ++r)
      if (!m.store->check({key("hb/", r)})) missing.push_back(r);
    if (missing.empty()) break;
    if (Clock::now() - t0 > kJoinTimeout)
      throw Error(
          rank_list(missing) + " did not join within " +
          std::to_string(std::chrono::duration_cast<std::chrono::seconds>(kJoinTimeout).count()) +
          " s at " + addr + "; start every process with the same MASTER_ADDR, " +
          "MASTER_PORT and WORLD_SIZE " + std::to_string(o.world_size));
    if (Clock::now() - last_report > kJoinReport) {
      last_report = Clock::now();
      std::cerr << "ebm-train: " << me << ": waiting for " << rank_list(missing) << " to join at "
                << addr << " (" << int(seconds(last_report - t0)) << " s so far)\n";
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  for (int r = 0; r < o.world_size; ++r) {
    const std::string w = text_of(m.store->get(key("world/", r)));
    if (w != std::to_string(o.world_size))
      throw Error("rank " + std::to_string(r) + " was started with WORLD_SIZE " + w + ", rank " +
                  std::to_string(o.rank) + " with " + std::to_string(o.world_size) +
                  "; start every process with the same WORLD_SIZE");
  }
  m.store->setTimeout(m.timeout);

  // Gloo binds to this machine's address on the route to rank 0 (or GLOO_SOCKET_IFNAME's
  // interface, as in PyTorch): the host name may resolve to 127.0.1.1 on Debian, which the other
  // machines cannot reach.
  auto gopt = c10d::ProcessGroupGloo::Options::create(m.timeout);
  const char* ifname = std::getenv("GLOO_SOCKET_IFNAME");
  const std::string local = route_address(o.master_addr);
  if (ifname && *ifname) {
    gopt->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  } else if (!local.empty()) {
    if (o.rank == 0 && is_loopback(local) && !is_loopback(o.master_addr) &&
        o.master_addr != "localhost")
      std::cerr << "ebm-train: warning: MASTER_ADDR '" << o.master_addr
                << "' leads to the loopback address " << local
                << " on rank 0's machine; ranks on other machines cannot reach it (give rank 0's "
                   "network address, or set GLOO_SOCKET_IFNAME)\n";
    gopt->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(local));
  } else {
    gopt->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  }
  // One worker: buckets leave one after another in a fixed order, and a second worker would only
  // take a core from the backward pass.
  gopt->threads = 1;
  try {
    m.pg = c10::make_intrusive<c10d::ProcessGroupGloo>(
        c10::make_intrusive<c10d::PrefixStore>("gloo", m.store), o.rank, o.world_size, gopt);
  } catch (const std::exception& e) {
    throw Error(me + " cannot connect to the other ranks (" +
                std::string(e.what()).substr(0, std::string(e.what()).find('\n')) +
                "); a firewall between the machines, or set GLOO_SOCKET_IFNAME to the interface "
                "they share");
  }

  Watch& w = *m.watch;
  w.self = o.rank;
  w.n = o.world_size;
  w.beat.assign(size_t(o.world_size), 0);
  w.phase.assign(size_t(o.world_size), 0);
  w.changed.assign(size_t(o.world_size), Clock::now());
  w.last_ok = Clock::now();
  c10d::TCPStoreOptions wo = so;
  wo.isServer = false;
  wo.timeout = m.timeout;
  w.store = c10::make_intrusive<c10d::TCPStore>(o.master_addr, wo);
  m.watchdog_thread = std::thread(watchdog, m.watch);
}

Collective::~Collective() {
  Impl& m = *impl_;
  if (m.watchdog_thread.joinable()) {
    {
      std::lock_guard<std::mutex> lk(m.watch->m);
      m.watch->stop = true;
    }
    m.watch->cv.notify_all();
    // After a fault the watchdog may be blocked on a hung store, and Gloo's workers on a dead
    // peer: nothing is joined or torn down, the process is about to end (main.cpp).
    if (m.finished) {
      m.watchdog_thread.join();
    } else {
      m.watchdog_thread.detach();
      (void)m.pg.release();
      (void)m.store.release();
    }
  }
}

std::string Collective::describe() const {
  return "rank " + std::to_string(opt_.rank) + " of " + std::to_string(opt_.world_size);
}

void Collective::publish(const std::string& k, const std::string& value) {
  impl_->store->set("pub/" + k, bytes_of(value));
}

std::string Collective::fetch(const std::string& k) {
  try {
    return text_of(impl_->store->get("pub/" + k));
  } catch (const std::exception& e) {
    throw impl_->fault("waiting for rank 0's " + k, e.what());
  }
}

void Collective::broadcast(std::vector<torch::Tensor> tensors, const std::string& what) {
  for (torch::Tensor& t : tensors) {
    std::vector<at::Tensor> v = {t.is_contiguous() ? t : t.contiguous()};
    impl_->run(what, [&] { return impl_->pg->broadcast(v); });
    if (!v[0].is_same(t)) t.copy_(v[0]);
  }
}

std::vector<uint8_t> Collective::broadcast_bytes(std::vector<uint8_t> bytes,
                                                 const std::string& what) {
  torch::Tensor n = torch::tensor({int64_t(bytes.size())}, torch::kInt64);
  broadcast({n}, what);
  bytes.resize(size_t(n.item<int64_t>()));
  torch::Tensor data = torch::from_blob(bytes.data(), {int64_t(bytes.size())}, torch::kUInt8);
  broadcast({data}, what);
  return bytes;
}

void Collective::allreduce_sum(torch::Tensor t, const std::string& what) {
  std::vector<at::Tensor> v = {t};
  impl_->run(what, [&] { return impl_->pg->allreduce(v); });
}

std::vector<torch::Tensor> Collective::gather(const torch::Tensor& t, const std::string& what) {
  // Gloo gathers equal shapes only: every rank's shape is checked first, so a mismatch is a clear
  // error rather than a failed collective.
  std::vector<int64_t> shape(8, -1);
  shape[0] = t.dim();
  for (int64_t d = 0; d < t.dim() && d < 7; ++d) shape[size_t(d + 1)] = t.size(d);
  const std::vector<torch::Tensor> shapes = impl_->allgather(torch::tensor(shape), what);
  for (int r = 1; r < size(); ++r)
    if (!torch::equal(shapes[size_t(r)], shapes[0]))
      throw Error(what + ": rank " + std::to_string(r) + " holds a tensor of shape " +
                  c10::str(shapes[size_t(r)]) + ", rank 0 of " + c10::str(shapes[0]));
  std::vector<std::vector<at::Tensor>> out;
  if (root()) {
    out.resize(1);
    for (int r = 0; r < size(); ++r) out[0].push_back(torch::empty_like(t).contiguous());
  }
  std::vector<at::Tensor> in = {t.contiguous()};
  impl_->run(what, [&] { return impl_->pg->gather(out, in); });
  return root() ? out[0] : std::vector<torch::Tensor>{};
}

void Collective::expect_equal(uint64_t fp, const std::string& what, const std::string& fix) {
  int64_t v = 0;
  std::memcpy(&v, &fp, sizeof v);
  const std::vector<torch::Tensor> all =
      impl_->allgather(torch::tensor({v}, torch::kInt64), "comparing " + what);
  std::vector<int> differ;
  for (int r = 1; r < size(); ++r)
    if (all[size_t(r)].item<int64_t>() != all[0].item<int64_t>()) differ.push_back(r);
  if (differ.empty()) return;
  auto hex = [](int64_t x) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(x));
    return std::string(buf);
  };
  throw Error(what + ": " + rank_list(differ) + " differ" + (differ.size() == 1 ? "s" : "") +
              " from rank 0 (fingerprint " + hex(all[size_t(differ[0])].item<int64_t>()) +
              " against " + hex(all[0].item<int64_t>()) + "); " + fix);
}

void Collective::wait_for_all(const std::string& what) {
  Impl& m = *impl_;
  Watch& w = *m.watch;
  std::unique_lock<std::mutex> lk(w.m);
  const int64_t target = ++w.my_phase;
  w.phase[size_t(rank())] = target;
  w.urgent = true;
  w.cv.notify_all();
  for (;;) {
    // This rank's own phase must be in the store too before it moves on: the others wait for it,
    // and after finish() nothing would publish it.
    bool all = w.published >= target;
    for (int r = 0; r < size(); ++r) all = all && w.phase[size_t(r)] >= target;
    if (all) break;
    const std::string who = m.silent_ranks(m.timeout);
    if (!who.empty()) {
      m.broken = true;
      throw PeerFailure(who + "; rank " + std::to_string(rank()) +
                        " stops too (it was waiting for " + what + ")");
    }
    w.cv.wait_for(lk, milliseconds(50));
  }
  w.urgent = false;
}

double Collective::time_allreduce(int64_t numel) {
  std::vector<at::Tensor> v = {torch::zeros({numel}, torch::kFloat32)};
  std::vector<double> times;
  for (int i = 0; i < 6; ++i) {
    const Clock::time_point t0 = Clock::now();
    impl_->run("timing the all-reduce", [&] { return impl_->pg->allreduce(v); });
    if (i > 0) times.push_back(seconds(Clock::now() - t0));
  }
  std::sort(times.begin(), times.end());
  return times[times.size() / 2];
}

void Collective::finish() {
  Impl& m = *impl_;
  {
    std::lock_guard<std::mutex> lk(m.watch->m);
    m.watch->stop = true;
  }
  m.watch->cv.notify_all();
  m.watchdog_thread.join();
  m.run("the final barrier", [&] { return m.pg->barrier(); });
  m.finished = true;
}

// ---- GradientAverager ----

struct GradientAverager::Impl {
  struct Bucket {
    torch::Tensor flat;          // float32 [sum of its parameters' sizes]
    std::vector<size_t> params;  // indices into `params`
    size_t ready = 0;
    c10::intrusive_ptr<c10d::Work> work;
  };
  Collective::Impl& c;
  std::vector<torch::Tensor> params;
  std::vector<torch::Tensor> slices;  // each parameter's view into its bucket
  std::vector<size_t> bucket_of;
  std::vector<bool> have;
  std::vector<unsigned> hooks;
  std::vector<Bucket> buckets;
  size_t next = 0;  // the next bucket to launch
  bool armed = false;
  double exposed = 0;
  int64_t steps = 0;

  Impl(Collective::Impl& col, const std::vector<torch::Tensor>& p) : c(col), params(p) {
    // Backward produces gradients roughly from the last layer to the first: buckets are filled
    // in that order, so the first one fills (and leaves) earliest.
    std::vector<std::vector<size_t>> groups(1);
    size_t bytes = 0;
    for (size_t k = params.size(); k-- > 0;) {
      if (bytes >= kBucketBytes) {
        groups.emplace_back();
        bytes = 0;
      }
      groups.back().push_back(k);
      bytes += size_t(params[k].numel()) * 4;
    }
    slices.resize(params.size());
    bucket_of.resize(params.size());
    have.assign(params.size(), false);
    for (const std::vector<size_t>& g : groups) {
      if (g.empty()) continue;
      Bucket b;
      int64_t n = 0;
      for (size_t k : g) n += params[k].numel();
      b.flat = torch::zeros({n}, torch::kFloat32);
      int64_t off = 0;
      for (size_t k : g) {
        slices[k] = b.flat.narrow(0, off, params[k].numel()).view(params[k].sizes());
        bucket_of[k] = buckets.size();
        off += params[k].numel();
      }
      b.params = g;
      buckets.push_back(std::move(b));
    }
    for (size_t k = 0; k < params.size(); ++k)
      hooks.push_back(params[k].register_hook([this, k](at::Tensor g) { arrived(k, g); }));
  }

  ~Impl() {
    for (size_t k = 0; k < params.size(); ++k) params[k].remove_hook(hooks[k]);
  }

  void arrived(size_t k, const torch::Tensor& g) {
    if (!armed || have[k]) return;
    slices[k].copy_(g);
    have[k] = true;
    Bucket& b = buckets[bucket_of[k]];
    if (++b.ready == b.params.size()) launch_ready();
  }

  // Launches the full buckets in order (0, 1, ...): c10d matches collectives by the order they
  // are issued, so every rank must issue them alike even if a later bucket fills first.
  void launch_ready() {
    while (next < buckets.size() && buckets[next].ready == buckets[next].params.size()) {
      std::vector<at::Tensor> v = {buckets[next].flat};
      try {
        buckets[next].work = c.pg->allreduce(v);
      } catch (const std::exception& e) {
        throw c.fault("averaging the gradients", e.what());
      }
      ++next;
    }
  }
};

GradientAverager::GradientAverager(Collective& c, const std::vector<torch::Tensor>& params)
    : impl_(std::make_unique<Impl>(*c.impl_, params)) {}

GradientAverager::~GradientAverager() = default;

void GradientAverager::begin() {
  Impl& m = *impl_;
  m.next = 0;
  for (Impl::Bucket& b : m.buckets) {
    b.ready = 0;
    b.work.reset();
  }
  std::fill(m.have.begin(), m.have.end(), false);
  m.armed = true;
}

void GradientAverager::finish() {
  Impl& m = *impl_;
  m.armed = false;
  // A parameter without a gradient (not used by this loss) contributes zeros, on every rank.
  for (Impl::Bucket& b : m.buckets)
    for (size_t k : b.params)
      if (!m.have[k]) {
        m.slices[k].zero_();
        ++b.ready;
      }
  const Clock::time_point t0 = Clock::now();
  m.launch_ready();
  const double inv = 1.0 / double(m.c.opt.world_size);
  for (Impl::Bucket& b : m.buckets) {
    m.c.wait(b.work, "averaging the gradients");
    b.flat.mul_(inv);
    for (size_t k : b.params) {
      if (!m.have[k]) continue;
      torch::Tensor& grad = m.params[k].mutable_grad();
      if (grad.defined())
        grad.copy_(m.slices[k]);
      else
        grad = m.slices[k].clone();
    }
  }
  m.exposed += seconds(Clock::now() - t0);
  ++m.steps;
}

size_t GradientAverager::buckets() const {
  return impl_->buckets.size();
}

int64_t GradientAverager::numel() const {
  int64_t n = 0;
  for (const Impl::Bucket& b : impl_->buckets) n += b.flat.numel();
  return n;
}

double GradientAverager::exposed_seconds() const {
  return impl_->exposed;
}

int64_t GradientAverager::steps() const {
  return impl_->steps;
}


#else  // built without Gloo (EBM_TRAINER_DISTRIBUTED=OFF): one process trains alone

namespace {

[[noreturn]] void no_gloo() {
  throw Error("this ebm-train was built without data parallelism (EBM_TRAINER_DISTRIBUTED=OFF: "
              "no Gloo headers); train with WORLD_SIZE unset or 1, or rebuild with libgloo-dev");
}

}  // namespace

struct Collective::Impl {};
struct GradientAverager::Impl {};

Collective::Collective(const DistOptions& o) : opt_(o) { no_gloo(); }
Collective::~Collective() = default;
std::string Collective::describe() const {
  return "rank " + std::to_string(opt_.rank) + " of " + std::to_string(opt_.world_size);
}
void Collective::publish(const std::string&, const std::string&) { no_gloo(); }
std::string Collective::fetch(const std::string&) { no_gloo(); }
void Collective::broadcast(std::vector<torch::Tensor>, const std::string&) { no_gloo(); }
std::vector<uint8_t> Collective::broadcast_bytes(std::vector<uint8_t>, const std::string&) {
  no_gloo();
}
void Collective::allreduce_sum(torch::Tensor, const std::string&) { no_gloo(); }
std::vector<torch::Tensor> Collective::gather(const torch::Tensor&, const std::string&) {
  no_gloo();
}
void Collective::expect_equal(uint64_t, const std::string&, const std::string&) { no_gloo(); }
void Collective::wait_for_all(const std::string&) { no_gloo(); }
double Collective::time_allreduce(int64_t) { no_gloo(); }
void Collective::finish() { no_gloo(); }

GradientAverager::GradientAverager(Collective&, const std::vector<torch::Tensor>&) { no_gloo(); }
GradientAverager::~GradientAverager() = default;
void GradientAverager::begin() { no_gloo(); }
void GradientAverager::finish() { no_gloo(); }
size_t GradientAverager::buckets() const { no_gloo(); }
int64_t GradientAverager::numel() const { no_gloo(); }
double GradientAverager::exposed_seconds() const { no_gloo(); }
int64_t GradientAverager::steps() const { no_gloo(); }

#endif  // EBM_HAVE_GLOO

}  // namespace ebm::train
