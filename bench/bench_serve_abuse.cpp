// Load and abuse benchmark of ebm-serve (bench/serve-abuse.sh runs it): the real binary on
// 127.0.0.1, N keep-alive client connections downloading a model and the listing for S seconds
// while the model is republished every 0.5 s and a slow-client attack (idle connections and
// slowloris connections, reopened whenever the server drops them) runs beside them. Every model
// body is checked by its SHA-256 (one of the two published versions, and the one its ETag
// names); every listing must parse. Prints requests per second, latency percentiles and every
// kind of error. Loopback only, bounded in connections and time.
#include <fcntl.h>
#include <httplib.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "ebm/architecture.h"
#include "ebm/cli.h"
#include "ebm/error.h"
#include "ebm/model.h"
#include "ebm/sha256.h"

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
constexpr const char* kToken = "bench-token";

std::string model_bytes(uint64_t seed, const std::string& presets) {
  ebm::Model m = ebm::random_model(ebm::load_preset(presets + "/paper.json").arch, seed);
  m.card = {{"name", "bench " + std::to_string(seed)}};
  const std::vector<uint8_t> b = ebm::serialize_model(m);
  return std::string(b.begin(), b.end());
}

int connect_to(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Starts ebm-serve --port 0 and reads the port from its first line.
pid_t start_server(const std::string& bin, const std::string& web, const std::string& models,
                   int* port) {
  int out[2];
  if (::pipe(out) != 0) return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    const int devnull = ::open("/dev/null", O_WRONLY);
    ::dup2(devnull, 2);  // the access log: a line per request
    ::setenv("EBM_PUBLISH_TOKEN", kToken, 1);
    ::execl(bin.c_str(), bin.c_str(), "--web", web.c_str(), "--models", models.c_str(), "--port",
            "0", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out[1]);
  std::string line;
  char c;
  while (::read(out[0], &c, 1) == 1 && c != '\n') line += c;
  ::close(out[0]);
  const size_t at = line.find("127.0.0.1:");
  *port = at == std::string::npos ? 0 : std::atoi(line.c_str() + at + 10);
  return pid;
}

struct Counts {
  std::atomic<long> ok{0}, status{0}, hash{0}, etag{0}, json{0}, transport{0};
  std::atomic<long long> bytes{0};
  long errors() const { return status + hash + etag + json + transport; }
};

}  // namespace

int main(int argc, char** argv) {
  std::string serve_bin = "build/release/web/server/ebm-serve";
  std::string presets = ebm::presets_dir();
  int connections = 64, seconds = 30, idle = 200, slow = 200;
  ebm::ArgParser args("bench_serve_abuse",
                      "ebm-serve under load and abuse on 127.0.0.1: keep-alive clients download "
                      "a model (checked by SHA-256) and the listing while it is republished "
                      "every 0.5 s and idle + slowloris connections are held open.");
  args.option("serve", "FILE", "the ebm-serve binary", &serve_bin);
  args.option("connections", "N", "client connections", &connections, 1, 256);
  args.option("seconds", "S", "duration", &seconds, 1, 300);
  args.option("idle", "N", "idle attack connections (connect, send nothing)", &idle, 0, 1000);
  args.option("slowloris", "N", "slowloris connections (a header line every second)", &slow, 0,
              1000);
  args.parse(argc, argv);

  return ebm::run_main("bench_serve_abuse", [&]() {
    rlimit files{};
    if (::getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
      files.rlim_cur = files.rlim_max;
      ::setrlimit(RLIMIT_NOFILE, &files);
    }
    const fs::path root =
        fs::temp_directory_path() / ("ebm_bench_serve_" + std::to_string(::getpid()));
    fs::remove_all(root);
    fs::create_directories(root / "web");
    fs::create_directories(root / "models");
    std::ofstream(root / "web/index.html") << "<!doctype html><title>bench</title>";
    const std::string versions[2] = {model_bytes(1, presets), model_bytes(2, presets)};
    const std::string hashes[2] = {ebm::sha256_hex(versions[0]), ebm::sha256_hex(versions[1])};
    std::ofstream(root / "models/m.safetensors", std::ios::binary) << versions[0];

    int port = 0;
    const pid_t server =
        start_server(serve_bin, (root / "web").string(), (root / "models").string(), &port);
    if (server < 0 || port <= 0)
      throw ebm::Error("could not start '" + serve_bin + "' (build it, or pass --serve)");

    std::atomic<bool> done{false};
    Counts counts;
    std::mutex lat_mu;
    std::vector<double> latencies;  // ms, every request
    std::atomic<long> publishes{0}, publish_errors{0}, attack_reopens{0};

    // The attack: idle and slowloris connections, reopened when the server closes them.
    std::thread attacker([&] {
      std::vector<int> idles, slows;
      for (int i = 0; i < idle; ++i) idles.push_back(connect_to(port));
      const std::string start = "GET / HTTP/1.1\r\nHost: x\r\n";
      for (int i = 0; i < slow; ++i) {
        slows.push_back(connect_to(port));
        if (slows.back() >= 0)
          (void)!::send(slows.back(), start.data(), start.size(), MSG_NOSIGNAL);
      }
      for (long k = 0; !done; ++k) {
        for (int& fd : slows) {
          if (fd < 0) {
            fd = connect_to(port);
            ++attack_reopens;
            if (fd >= 0) (void)!::send(fd, start.data(), start.size(), MSG_NOSIGNAL);
            continue;
          }
          const std::string line = "X-Drip-" + std::to_string(k) + ": 1\r\n";
          if (::send(fd, line.data(), line.size(), MSG_NOSIGNAL) < 0) {
            ::close(fd);
            fd = -1;
          }
        }
        for (int& fd : idles) {  // closed by the server after the header deadline: reopen
          char b;
          if (fd >= 0 && ::recv(fd, &b, 1, MSG_DONTWAIT) == 0) {
            ::close(fd);
            fd = connect_to(port);
            ++attack_reopens;
          }
        }
        for (int i = 0; i < 10 && !done; ++i)
          std::this_thread::sleep_for(std::chrono::milliseconds(100));
      }
      for (int fd : idles)
        if (fd >= 0) ::close(fd);
      for (int fd : slows)
        if (fd >= 0) ::close(fd);
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(500));

    std::thread publisher([&] {
      httplib::Client c("127.0.0.1", port);
      c.set_bearer_token_auth(kToken);
      for (int k = 1; !done; ++k) {
        auto r = c.Put("/api/models/m", versions[k % 2], "application/octet-stream");
        if (r && (r->status == 200 || r->status == 201))
          ++publishes;
        else
          ++publish_errors;
        std::this_thread::sleep_for(std::chrono::milliseconds(500));
      }
    });

    const auto t0 = Clock::now();
    const auto end = t0 + std::chrono::seconds(seconds);
    // A fresh client asks GET /health every second throughout: the worst wait a newcomer sees.
    std::atomic<long> probes{0}, probe_failures{0};
    std::atomic<double> probe_worst_ms{0};
    std::thread prober([&] {
      while (Clock::now() < end) {
        const auto p0 = Clock::now();
        httplib::Client pc("127.0.0.1", port);
        pc.set_read_timeout(10, 0);
        auto r = pc.Get("/health");
        const double ms = std::chrono::duration<double, std::milli>(Clock::now() - p0).count();
        ++probes;
        if (!r || r->status != 200) ++probe_failures;
        if (ms > probe_worst_ms) probe_worst_ms = ms;
        std::this_thread::sleep_for(std::chrono::seconds(1));
      }
    });
    std::vector<std::thread> clients;
    for (int i = 0; i < connections; ++i) {
      clients.emplace_back([&, i] {
        httplib::Client c("127.0.0.1", port);
        c.set_keep_alive(true);
        c.set_read_timeout(10, 0);
        std::vector<double> mine;
        for (long k = i; Clock::now() < end; ++k) {
          const bool listing = k % 8 == 0;  // mostly model downloads, some listings
          const auto r0 = Clock::now();
          auto r = c.Get(listing ? "/api/models" : "/models/m.safetensors");
          mine.push_back(std::chrono::duration<double, std::milli>(Clock::now() - r0).count());
          if (!r) {
            ++counts.transport;
            continue;
          }
          counts.bytes += (long long)r->body.size();
          if (r->status != 200) {
            ++counts.status;
            continue;
          }
          if (listing) {
            // The listing must parse and name one of the two versions by its hash.
            const nlohmann::json j = nlohmann::json::parse(r->body, nullptr, false);
            if (j.is_discarded() || !j.contains("models") || j["models"].size() != 1) {
              ++counts.json;
              continue;
            }
            const std::string listed = j["models"][0].value("sha256", "");
            if (listed != hashes[0] && listed != hashes[1]) {
              ++counts.hash;
              continue;
            }
          } else {
            const std::string h = ebm::sha256_hex(r->body);
            if (h != hashes[0] && h != hashes[1]) {
              ++counts.hash;
              continue;
            }
            if (r->get_header_value("ETag") != "\"" + h + "\"") {
              ++counts.etag;
              continue;
            }
          }
          ++counts.ok;
        }
        std::lock_guard<std::mutex> lock(lat_mu);
        latencies.insert(latencies.end(), mine.begin(), mine.end());
      });
    }
    for (std::thread& t : clients) t.join();
    prober.join();
    const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
    // A health check while the attack is still on.
    const auto h0 = Clock::now();
    httplib::Client hc("127.0.0.1", port);
    auto health = hc.Get("/health");
    const double health_ms = std::chrono::duration<double, std::milli>(Clock::now() - h0).count();
    done = true;
    publisher.join();
    attacker.join();
    ::kill(server, SIGTERM);
    int wstatus = 0;
    ::waitpid(server, &wstatus, 0);
    fs::remove_all(root);

    std::sort(latencies.begin(), latencies.end());
    auto pct = [&](double p) {
      return latencies.empty()
                 ? 0.0
                 : latencies[std::min(latencies.size() - 1, size_t(p * double(latencies.size())))];
    };
    const long total = long(latencies.size());
    std::printf(
        "ebm-serve under load and abuse: %d connections, %.1f s, model %zu bytes "
        "(paper preset, F16), republished every 0.5 s; attack: %d idle + %d slowloris "
        "connections held open (%ld reopened after the server dropped them)\n",
        connections, secs, versions[0].size(), idle, slow, attack_reopens.load());
    std::printf(
        "| requests | requests/s | MB/s | p50 ms | p99 ms | max ms | errors | "
        "publishes | GET /health after |\n| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
        "| ---: |\n");
    std::printf(
        "| %ld | %.0f | %.0f | %.2f | %.2f | %.1f | %ld | %ld (%ld failed) | %s in %.1f ms |\n",
        total, double(total) / secs, double(counts.bytes.load()) / secs / 1e6, pct(0.5), pct(0.99),
        latencies.empty() ? 0.0 : latencies.back(), counts.errors(), publishes.load(),
        publish_errors.load(), health ? std::to_string(health->status).c_str() : "no answer",
        health_ms);
    std::printf(
        "GET /health from a new connection once a second during the run: %ld asked, %ld "
        "failed, slowest %.1f ms\n",
        probes.load(), probe_failures.load(), probe_worst_ms.load());
    std::printf("errors by kind: status %ld, hash %ld, etag %ld, json %ld, transport %ld\n",
                counts.status.load(), counts.hash.load(), counts.etag.load(), counts.json.load(),
                counts.transport.load());
    const bool clean = counts.errors() == 0 && publish_errors == 0 && probe_failures == 0 &&
                       health && health->status == 200;
    return clean ? 0 : 1;
  });
}
