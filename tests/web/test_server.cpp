// ebm-serve in-process on an ephemeral 127.0.0.1 port, driven by httplib's client and by raw
// sockets (for paths a client library would clean up).
#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>
#include <thread>

#include "ebm/sha256.h"
#include "web_test_util.h"

namespace ebm {
namespace {

using nlohmann::json;
using test::RunningServer;
using test::TempDir;

constexpr const char* kToken = "correct-horse-battery-staple";

struct Site {
  TempDir root{"root"};
  std::string web = root / "web";
  std::string models = root / "models";
  std::string model_a = test::model_bytes(11, "model a");
  std::string model_b = test::model_bytes(12, "model b");
  Site() {
    test::write_text(web + "/index.html", "<!doctype html><title>ebm</title>");
    test::write_text(web + "/app.js", "export const x = 1;\n");
    test::write_text(web + "/style.css", "body{}\n");
    test::write_text(web + "/ebm_runtime.wasm", std::string("\0asm\1\0\0\0", 8));
    test::write_text(web + "/sub/index.html", "<p>sub</p>");
    test::write_text(root / "secret.txt", "TOP SECRET");
    test::write_text(models + "/bridges.safetensors", model_a);
    test::write_text(models + "/broken.safetensors", "garbage, not a model");
    test::write_text(models + "/presets/paper.json", "{\"name\":\"paper\"}");
  }
  ServerOptions options(const std::string& token = "") const {
    ServerOptions o;
    o.web_dir = web;
    o.models_dir = models;
    o.publish_token = token;
    o.log = nullptr;
    return o;
  }
};

httplib::Headers bearer(const std::string& token) {
  return {{"Authorization", "Bearer " + token}};
}

TEST(Server, HealthAnswersOk) {
  Site site;
  RunningServer srv(site.options());
  httplib::Client c("127.0.0.1", srv.port());
  auto r = c.Get("/health");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(json::parse(r->body)["status"], "ok");
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json; charset=utf-8");
}

// A stop at any moment of the start must end the server. Two ways it hung: a stop between the
// bind and httplib's accept loop left that loop waiting forever (this test hit it within a few
// cycles); a worker between its check of the stop flag and its sleep missed the wake-up and the
// stop waited on its join (seen once in a sanitizer run; too rare to hit here on demand). Many
// quick start/stop cycles, watched: a hang fails the test instead of stalling the run.
TEST(Server, StopsRightAfterStartingEveryTime) {
  Site site;
  std::atomic<int> cycles{0};
  std::thread loop([&] {
    for (int i = 0; i < 300; ++i) {
      ServerOptions o = site.options();
      o.host = "127.0.0.1";
      o.port = 0;
      HttpServer server(o);
      server.bind();
      std::thread run([&] { server.run(); });
      // Stop at every moment of the start: before the workers exist, while they start, after.
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(i * 7 % 400);
      while (std::chrono::steady_clock::now() < until) {
      }
      server.stop();
      run.join();
      ++cycles;
    }
  });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (cycles < 300 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  if (cycles < 300) {
    std::fprintf(stderr, "a server stop hung after %d start/stop cycles\n", cycles.load());
    std::_Exit(1);  // the stuck thread cannot be joined
  }
  loop.join();
}

TEST(Server, ListsModelsWithCardsSizesHashesAndInvalidFilesWithTheirReason) {
  Site site;
  RunningServer srv(site.options());
  httplib::Client c("127.0.0.1", srv.port());
  auto r = c.Get("/api/models");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/json; charset=utf-8");
  const json list = json::parse(r->body)["models"];
  ASSERT_EQ(list.size(), 2u) << r->body;  // presets/ is not a model
  EXPECT_EQ(list[0]["name"], "bridges");
  EXPECT_TRUE(list[0]["valid"].get<bool>());
  EXPECT_EQ(list[0]["card"]["name"], "model a");
  EXPECT_EQ(list[0]["size"].get<size_t>(), site.model_a.size());
  EXPECT_EQ(list[0]["sha256"], sha256_hex(site.model_a));
  EXPECT_EQ(list[0]["input"]["width"], 32);
  EXPECT_EQ(list[1]["name"], "broken");
  EXPECT_FALSE(list[1]["valid"].get<bool>());
  EXPECT_FALSE(list[1]["error"].get<std::string>().empty());
  // The same list is on disk for static hosts, and served from there.
  EXPECT_EQ(json::parse(test::read_text(site.models + "/index.json"))["models"], list);
  auto idx = c.Get("/models/index.json");
  ASSERT_TRUE(idx);
  EXPECT_EQ(idx->status, 200);
  EXPECT_EQ(json::parse(idx->body)["models"], list);
}

TEST(Server, ServesModelFilesWithTypeEtagAndRevalidation) {
  Site site;
  RunningServer srv(site.options());
  httplib::Client c("127.0.0.1", srv.port());
  auto r = c.Get("/models/bridges.safetensors");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->body, site.model_a);
  EXPECT_EQ(r->get_header_value("Content-Type"), "application/octet-stream");
  const std::string etag = "\"" + sha256_hex(site.model_a) + "\"";
  EXPECT_EQ(r->get_header_value("ETag"), etag);
  EXPECT_EQ(r->get_header_value("Cache-Control"), "no-cache");
  EXPECT_EQ(r->get_header_value("Content-Length"), std::to_string(site.model_a.size()));
  EXPECT_EQ(r->get_header_value("Access-Control-Allow-Origin"), "*");

  auto again = c.Get("/models/bridges.safetensors", {{"If-None-Match", etag}});
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 304);
  EXPECT_TRUE(again->body.empty());
  EXPECT_EQ(again->get_header_value("ETag"), etag);

  auto stale = c.Get("/models/bridges.safetensors", {{"If-None-Match", "\"0000\""}});
  ASSERT_TRUE(stale);
  EXPECT_EQ(stale->status, 200);

  // Asking by content hash makes the response cacheable for good; a wrong hash does not.
  auto pinned = c.Get(("/models/bridges.safetensors?v=" + sha256_hex(site.model_a)).c_str());
  ASSERT_TRUE(pinned);
  EXPECT_EQ(pinned->get_header_value("Cache-Control"), "public, max-age=31536000, immutable");
  auto wrong = c.Get("/models/bridges.safetensors?v=deadbeef");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->get_header_value("Cache-Control"), "no-cache");

  auto head = c.Head("/models/bridges.safetensors");
  ASSERT_TRUE(head);
  EXPECT_EQ(head->status, 200);
  EXPECT_EQ(head->get_header_value("ETag"), etag);
  EXPECT_TRUE(head->body.empty());
}

TEST(Server, RefusesToServeInvalidModelsPresetsAndMissingFiles) {
  Site site;
  RunningServer srv(site.options());
  httplib::Client c("127.0.0.1", srv.port());
  for (const char* path : {"/models/broken.safetensors", "/models/presets/paper.json",
                           "/models/absent.safetensors", "/no/such/page.html"}) {
    auto r = c.Get(path);
    ASSERT_TRUE(r) << path;
    EXPECT_EQ(r->status, 404) << path;
    EXPECT_TRUE(json::parse(r->body).contains("error")) << path << ": " << r->body;
  }
  auto broken = c.Get("/models/broken.safetensors");
  EXPECT_NE(broken->body.find("not a valid model"), std::string::npos) << broken->body;
}

TEST(Server, ServesTheSiteWithTypesAndNoCacheForPages) {
  Site site;
  RunningServer srv(site.options());
  httplib::Client c("127.0.0.1", srv.port());
  struct Case {
    const char* path;
    const char* type;
    std::string body;
  };
  for (const Case& k :
       {Case{"/", "text/html; charset=utf-8", test::read_text(site.web + "/index.html")},
        Case{"/index.html", "text/html; charset=utf-8", test::read_text(site.web + "/index.html")},
        Case{"/sub/", "text/html; charset=utf-8", "<p>sub</p>"},
        Case{"/app.js", "text/javascript; charset=utf-8", "export const x = 1;\n"},
        Case{"/style.css", "text/css; charset=utf-8", "body{}\n"},
        Case{"/ebm_runtime.wasm", "application/wasm", std::string("\0asm\1\0\0\0", 8)}}) {
    auto r = c.Get(k.path);
    ASSERT_TRUE(r) << k.path;
    EXPECT_EQ(r->status, 200) << k.path;
    EXPECT_EQ(r->get_header_value("Content-Type"), k.type) << k.path;
    EXPECT_EQ(r->body, k.body) << k.path;
    EXPECT_EQ(r->get_header_value("Cache-Control"), "no-cache") << k.path;
    EXPECT_EQ(r->get_header_value("ETag"), "\"" + sha256_hex(k.body) + "\"") << k.path;
    auto again = c.Get(k.path, {{"If-None-Match", r->get_header_value("ETag")}});
    ASSERT_TRUE(again);
    EXPECT_EQ(again->status, 304) << k.path;
  }
}

TEST(Server, WritesOneAccessLogLinePerRequest) {
  Site site;
  ServerOptions o = site.options();
  FILE* log = std::tmpfile();
  o.log = log;
  {
    RunningServer srv(o);
    httplib::Client c("127.0.0.1", srv.port());
    ASSERT_TRUE(c.Get("/health"));
    ASSERT_TRUE(c.Get("/app.js"));
    ASSERT_TRUE(c.Get("/missing"));
    ASSERT_TRUE(c.Put("/api/models/x", "x", "application/octet-stream"));
  }
  std::rewind(log);
  std::string text;
  char buf[512];
  while (std::fgets(buf, sizeof buf, log)) text += buf;
  std::fclose(log);
  int requests = 0;
  for (size_t at = 0; (at = text.find("127.0.0.1 \"", at)) != std::string::npos; ++at) ++requests;
  EXPECT_EQ(requests, 4) << text;
  EXPECT_NE(text.find("\"GET /health\" 200"), std::string::npos) << text;
  EXPECT_NE(text.find("\"GET /missing\" 404"), std::string::npos) << text;
  EXPECT_NE(text.find("\"PUT /api/models/x\" 403"), std::string::npos) << text;
}

TEST(Publish, IsForbiddenWhenTheServerHasNoToken) {
  Site site;
  RunningServer srv(site.options());
  httplib::Client c("127.0.0.1", srv.port());
  auto r = c.Put("/api/models/new", bearer(kToken), site.model_b, "application/octet-stream");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 403);
  EXPECT_NE(json::parse(r->body)["error"].get<std::string>().find("disabled"), std::string::npos);
  EXPECT_FALSE(test::fs::exists(site.models + "/new.safetensors"));
}

TEST(Publish, NeedsTheRightBearerToken) {
  Site site;
  RunningServer srv(site.options(kToken));
  httplib::Client c("127.0.0.1", srv.port());
  auto missing = c.Put("/api/models/new", site.model_b, "application/octet-stream");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 401);
  EXPECT_EQ(missing->get_header_value("WWW-Authenticate"), "Bearer realm=\"ebm-serve\"");
  for (const std::string& auth :
       {std::string("Bearer wrong"), std::string("Bearer ") + kToken + "x",
        std::string("Basic ") + kToken, std::string(kToken), std::string("Bearer ")}) {
    auto r = c.Put("/api/models/new", {{"Authorization", auth}}, site.model_b,
                   "application/octet-stream");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 401) << auth;
  }
  EXPECT_FALSE(test::fs::exists(site.models + "/new.safetensors"));
}

TEST(Publish, StoresAValidModelListsItAndUpdatesTheIndex) {
  Site site;
  RunningServer srv(site.options(kToken));
  httplib::Client c("127.0.0.1", srv.port());
  auto r = c.Put("/api/models/new", bearer(kToken), site.model_b, "application/octet-stream");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 201) << r->body;
  const json body = json::parse(r->body);
  EXPECT_EQ(body["name"], "new");
  EXPECT_EQ(body["sha256"], sha256_hex(site.model_b));
  EXPECT_FALSE(body["replaced"].get<bool>());
  EXPECT_EQ(test::read_text(site.models + "/new.safetensors"), site.model_b);
  const json index = json::parse(test::read_text(site.models + "/index.json"));
  ASSERT_EQ(index["models"].size(), 3u);
  EXPECT_EQ(index["models"][2]["name"], "new");
  auto got = c.Get("/models/new.safetensors");
  ASSERT_TRUE(got);
  EXPECT_EQ(got->body, site.model_b);

  // Replacing answers 200, and the extension in the URL is optional.
  auto again = c.Put("/api/models/new.safetensors", bearer(kToken), site.model_a,
                     "application/octet-stream");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 200) << again->body;
  EXPECT_TRUE(json::parse(again->body)["replaced"].get<bool>());
  EXPECT_EQ(test::read_text(site.models + "/new.safetensors"), site.model_a);
}

TEST(Publish, RefusesInvalidModelsWithTheRuntimesReason) {
  Site site;
  RunningServer srv(site.options(kToken));
  httplib::Client c("127.0.0.1", srv.port());
  std::string truncated = site.model_b.substr(0, site.model_b.size() / 2);
  for (const std::string& body : {std::string("not a model"), truncated, std::string()}) {
    auto r = c.Put("/api/models/bad", bearer(kToken), body, "application/octet-stream");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << r->body;
    EXPECT_NE(json::parse(r->body)["error"].get<std::string>().find("invalid model: "),
              std::string::npos)
        << r->body;
  }
  EXPECT_FALSE(test::fs::exists(site.models + "/bad.safetensors"));
}

// A model whose batch-norm fold overflows F32 used to be published (201) and listed valid, then
// refused by Network; now every consumer sees the loader's verdict.
std::string overflowing_fold_model() {
  const json layers =
      json::parse(R"([{"type":"conv2d","out_channels":2,"kernel":3,"padding":"same"},
      {"type":"batchnorm"},{"type":"swish"},{"type":"flatten"},{"type":"dense","out_features":1}])");
  Model m = random_model(resolve_architecture({1, 8, 8}, layers), 5);
  for (Tensor& t : m.tensors) {
    if (t.name == "layers.1.weight") t.data.assign(t.data.size(), 3e38f);
    if (t.name == "layers.1.running_var") t.data.assign(t.data.size(), 0.0f);
  }
  const std::vector<uint8_t> b = serialize_model(m, DType::kF32);
  return std::string(b.begin(), b.end());
}

TEST(Publish, RefusesAModelThatLoadsButWouldNotRunAndTheListingAgrees) {
  Site site;
  const std::string bad = overflowing_fold_model();
  test::write_text(site.models + "/overflow.safetensors", bad);
  RunningServer srv(site.options(kToken));
  httplib::Client c("127.0.0.1", srv.port());
  auto r = c.Put("/api/models/again", bearer(kToken), bad, "application/octet-stream");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_NE(r->body.find("folding batch norm"), std::string::npos) << r->body;
  auto list = c.Get("/api/models");
  ASSERT_TRUE(list);
  bool seen = false;
  const json listed = json::parse(list->body);
  for (const json& e : listed["models"]) {
    if (e["name"] != "overflow") continue;
    seen = true;
    EXPECT_FALSE(e["valid"].get<bool>()) << e.dump();
    EXPECT_NE(e.value("error", "").find("folding batch norm"), std::string::npos) << e.dump();
  }
  EXPECT_TRUE(seen) << list->body;
}

TEST(Publish, RefusesUnsafeNames) {
  Site site;
  RunningServer srv(site.options(kToken));
  for (const char* path : {"/api/models/.hidden", "/api/models/a%20b", "/api/models/-x",
                           "/api/models/a..b", "/api/models/%2e%2e%2fescape"}) {
    const test::RawResponse r =
        test::raw_request(srv.port(), std::string("PUT ") + path + " HTTP/1.1",
                          "Authorization: Bearer " + std::string(kToken) +
                              "\r\nContent-Type: application/octet-stream\r\nContent-Length: " +
                              std::to_string(site.model_b.size()) + "\r\n\r\n" + site.model_b);
    EXPECT_TRUE(r.status == 400 || r.status == 404) << path << " -> " << r.status;
  }
  EXPECT_FALSE(test::fs::exists(site.root / "escape.safetensors"));
  int models = 0;
  for (const auto& e : test::fs::directory_iterator(site.models))
    models += e.path().extension() == ".safetensors";
  EXPECT_EQ(models, 2);
}

TEST(Publish, RefusesBodiesOverTheSizeCap) {
  Site site;
  ServerOptions o = site.options(kToken);
  o.max_upload_bytes = site.model_b.size() - 1;
  RunningServer srv(o);
  httplib::Client c("127.0.0.1", srv.port());
  auto r = c.Put("/api/models/big", bearer(kToken), site.model_b, "application/octet-stream");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 413);
  EXPECT_NE(json::parse(r->body)["error"].get<std::string>().find("limit"), std::string::npos);
  EXPECT_FALSE(test::fs::exists(site.models + "/big.safetensors"));
}

TEST(Traversal, EveryWayOutOfTheFoldersIsRefused) {
  Site site;
  test::fs::create_symlink(site.root / "secret.txt", site.web + "/link.txt");
  test::fs::create_symlink(site.root.str(), site.web + "/up");
  RunningServer srv(site.options());
  for (const char* path :
       {"/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E/secret.txt", "/..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt", "/sub/../../secret.txt", "/sub/%2e%2e/%2e%2e/secret.txt",
        "/models/../secret.txt", "/models/%2e%2e/secret.txt", "/models/..%2f..%2fsecret.txt",
        "//etc/passwd", "/%2fetc%2fpasswd", "/..\\secret.txt", "/link.txt", "/up/secret.txt",
        "/models/%2e%2e/web/index.html", "/./index.html", "/sub//index.html", "/%00index.html"}) {
    const test::RawResponse r =
        test::raw_request(srv.port(), std::string("GET ") + path + " HTTP/1.1");
    EXPECT_TRUE(r.status == 400 || r.status == 403 || r.status == 404)
        << path << " -> " << r.status << "\n"
        << r.head;
    EXPECT_EQ(r.body.find("TOP SECRET"), std::string::npos) << path;
    EXPECT_EQ(r.body.find("root:"), std::string::npos) << path;
  }
  // The server still works after all that.
  EXPECT_EQ(test::raw_request(srv.port(), "GET /index.html HTTP/1.1").status, 200);
}

// Readers download a model over and over while a publisher keeps replacing it: every download is
// one whole version, and its ETag names exactly the bytes that came with it.
TEST(Publish, ConcurrentDownloadsNeverSeeAPartialFile) {
  Site site;
  RunningServer srv(site.options(kToken));
  const std::string hash_a = sha256_hex(site.model_a), hash_b = sha256_hex(site.model_b);
  std::atomic<bool> done{false};
  std::atomic<int> downloads{0}, bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 4; ++t)
    readers.emplace_back([&] {
      httplib::Client c("127.0.0.1", srv.port());
      while (!done.load()) {
        auto r = c.Get("/models/bridges.safetensors");
        if (!r || r->status != 200) {
          ++bad;
          continue;
        }
        const std::string h = sha256_hex(r->body);
        if ((h != hash_a && h != hash_b) || r->get_header_value("ETag") != "\"" + h + "\"") ++bad;
        ++downloads;
      }
    });
  httplib::Client pub("127.0.0.1", srv.port());
  int published = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (int i = 0; i < 40 && std::chrono::steady_clock::now() < deadline; ++i) {
    auto r = pub.Put("/api/models/bridges", bearer(kToken), i % 2 ? site.model_a : site.model_b,
                     "application/octet-stream");
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    ++published;
  }
  done.store(true);
  for (std::thread& t : readers) t.join();
  EXPECT_EQ(bad.load(), 0) << "of " << downloads.load() << " downloads";
  EXPECT_GT(downloads.load(), published);
  EXPECT_GE(published, 10);
}

}  // namespace
}  // namespace ebm
