#include "server.h"

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <climits>
#include <cstdlib>
#include <ctime>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>

#include "ebm/catalog.h"
#include "ebm/cli.h"
#include "ebm/error.h"
#include "ebm/file_snapshot.h"
#include "ebm/model_name.h"
#include "ebm/sha256.h"
#include "gated_server.h"
#include "http_headers.h"
#include "static_path.h"

namespace ebm {

using nlohmann::json;

namespace {

// Site files are small; anything larger is not something this server should hold in memory.
constexpr uint64_t kMaxSiteFileBytes = 256ull << 20;

thread_local std::chrono::steady_clock::time_point t_request_start;

std::string real_folder(const std::string& dir, const char* what) {
  char buf[PATH_MAX];
  if (dir.empty()) throw Error(std::string(what) + " folder not given");
  if (!::realpath(dir.c_str(), buf))
    throw Error(std::string(what) + " folder '" + dir + "' does not exist");
  return buf;
}

// Request paths and names come from the client and need not be UTF-8: invalid bytes become
// U+FFFD rather than an exception, so every error still goes out as JSON.
std::string json_text(const json& body) {
  return body.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

void send_json(httplib::Response& res, int status, const json& body) {
  res.status = status;
  res.set_header("Cache-Control", "no-cache");
  res.set_content(json_text(body), "application/json; charset=utf-8");
}

void send_error(httplib::Response& res, int status, const std::string& message) {
  send_json(res, status, json{{"error", message}});
}

std::string reason(int status) {
  switch (status) {
    case 400:
      return " bad request";
    case 404:
      return " not found";
    case 405:
      return " method not allowed";
    case 413:
      return " payload too large";
    case 416:
      return " range not satisfiable";
    case 414:
      return " URI too long";
    default:
      return "";
  }
}

GateLimits gate_limits(const ServerOptions& o) {
  GateLimits g;
  g.header_timeout_ms = o.header_timeout_ms;
  g.workers = o.workers;
  g.max_connections = o.max_connections;
  return g;
}

uint64_t declared_length(const httplib::Request& req) {
  const std::string v = req.get_header_value("Content-Length");
  return v.empty() ? 0 : std::strtoull(v.c_str(), nullptr, 10);
}

bool is_publish(const httplib::Request& req) {
  return req.method == "PUT" && req.path.rfind("/api/models/", 0) == 0;
}

}  // namespace

struct HttpServer::Impl {
  explicit Impl(ServerOptions o)
      : opt(std::move(o)),
        web_real(real_folder(opt.web_dir, "web")),
        models_real(real_folder(opt.models_dir, "models")),
        catalog(opt.models_dir),
        svr(gate_limits(opt)) {}

  void notice(const std::string& line) {
    if (opt.log) std::fprintf(opt.log, "ebm-serve: %s\n", line.c_str());
  }

  void update_index() {
    try {
      if (catalog.write_index()) notice("wrote " + catalog.path_of("index.json"));
      index_warned = false;
    } catch (const Error& e) {
      if (!index_warned.exchange(true))
        notice(std::string("cannot update index.json (static hosts will see an old list): ") +
               e.what());
    }
  }

  // The SHA-256 of a snapshot, computed once per file version.
  std::string hash_of(const std::string& path, const FileSnapshot& snap) {
    {
      std::lock_guard<std::mutex> lock(hash_mu);
      auto it = hashes.find(path);
      if (it != hashes.end() && it->second.first == snap.id) return it->second.second;
    }
    std::string h = sha256_hex(snap.bytes);
    std::lock_guard<std::mutex> lock(hash_mu);
    if (hashes.size() > 4096) hashes.clear();
    hashes[path] = {snap.id, h};
    return h;
  }

  void send_file(const httplib::Request& req, httplib::Response& res, const std::string& path,
                 bool is_model) {
    FileSnapshot snap;
    try {
      snap = read_snapshot(path, is_model ? ModelCatalog::kMaxModelBytes : kMaxSiteFileBytes);
    } catch (const Error&) {
      return send_error(res, 404, "not found: " + req.path);
    }
    const std::string sha = hash_of(path, snap);
    const std::string etag = quoted_etag(sha);
    const bool content_addressed = req.has_param("v") && req.get_param_value("v") == sha;
    res.set_header("ETag", etag);
    res.set_header("Cache-Control", cache_control_for(path, content_addressed));
    res.set_header("X-Content-Type-Options", "nosniff");
    if (is_model) {
      // Models may be opened by pages on other origins (?model=URL).
      res.set_header("Access-Control-Allow-Origin", "*");
      res.set_header("Access-Control-Expose-Headers", "ETag, Content-Length");
    }
    if (etag_matches(req.get_header_value("If-None-Match"), etag)) {
      res.status = 304;
      return;
    }
    // One range (several are dropped before routing): 206, and httplib cuts the body; a range
    // that starts past the end is 416.
    if (req.ranges.size() == 1) {
      const auto [first, last] = req.ranges[0];
      const auto size = static_cast<ssize_t>(snap.bytes.size());
      if ((first >= 0 && first >= size) || (first < 0 && last <= 0)) {
        res.set_header("Content-Range", "bytes */" + std::to_string(size));
        return send_error(res, 416,
                          "range not satisfiable: " + req.get_header_value("Range") + " of " +
                              std::to_string(size) + " bytes");
      }
    }
    res.status = req.ranges.empty() ? 200 : 206;
    res.set_content(std::move(snap.bytes), content_type_for(path).c_str());
  }

  void serve_site(const httplib::Request& req, httplib::Response& res) {
    const std::string rel = req.path.size() > 1 ? req.path.substr(1) : "";
    const ResolvedPath r = resolve_static_path(web_real, rel);
    switch (r.status) {
      case PathStatus::kOk:
        return send_file(req, res, r.file, false);
      case PathStatus::kBadPath:
        return send_error(res, 400, "bad path: " + req.path);
      case PathStatus::kOutside:
        return send_error(res, 403, "outside the served folder: " + req.path);
      case PathStatus::kNotFound:
        break;
    }
    send_error(res, 404, "not found: " + req.path);
  }

  // Only index.json and listed, valid model files: nothing else in the models folder (presets,
  // subfolders, invalid files) is served.
  void serve_model(const httplib::Request& req, httplib::Response& res, const std::string& file) {
    if (file == "index.json") {
      update_index();
      const ResolvedPath r = resolve_static_path(models_real, file);
      if (r.status == PathStatus::kOk) return send_file(req, res, r.file, true);
      return send_error(res, 404, "no index.json in the models folder");
    }
    if (file.find('/') != std::string::npos)
      return send_error(res, 404,
                        "not found: " + req.path +
                            " (only the models folder's own "
                            "model files and index.json are served)");
    const std::optional<CatalogEntry> entry = catalog.lookup(file);
    if (!entry) return send_error(res, 404, "no model file '" + file + "'");
    if (!entry->valid)
      return send_error(res, 404,
                        "'" + file + "' is not served: not a valid model (" + entry->error + ")");
    const ResolvedPath r = resolve_static_path(models_real, file);
    if (r.status != PathStatus::kOk) return send_error(res, 404, "no model file '" + file + "'");
    send_file(req, res, r.file, true);
  }

  void list_models(httplib::Response& res) {
    json list;
    try {
      list = catalog.list_json();
    } catch (const Error& e) {
      return send_error(res, 500, e.what());
    }
    update_index();
    res.set_header("Access-Control-Allow-Origin", "*");
    send_json(res, 200, list);
  }

  // Decides on the request header alone, before any byte of a body is read: requests with a
  // body are refused unless they are a publish with the right token and a declared size within
  // the limit. Returns true when it answered.
  bool refused_before_body(const httplib::Request& req, httplib::Response& res) {
    const bool has_body = req.has_header("Transfer-Encoding") || declared_length(req) > 0;
    if (!is_publish(req)) {
      if (!has_body) return false;
      send_error(res, 405,
                 req.method + " " + req.path +
                     " takes no request body (only PUT /api/models/<name> does)");
      return true;
    }
    if (opt.publish_token.empty()) {
      send_error(res, 403,
                 "publishing is disabled on this server (start ebm-serve with "
                 "--publish-token-file FILE or EBM_PUBLISH_TOKEN set)");
      return true;
    }
    const std::string auth = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (auth.compare(0, prefix.size(), prefix) != 0 ||
        !secrets_equal(auth.substr(prefix.size()), opt.publish_token)) {
      res.set_header("WWW-Authenticate", "Bearer realm=\"ebm-serve\"");
      send_error(res, 401,
                 auth.empty() ? "missing Authorization: Bearer <token>" : "wrong publish token");
      return true;
    }
    if (declared_length(req) > opt.max_upload_bytes) {
      send_error(res, 413,
                 "model is " + std::to_string(declared_length(req)) +
                     " bytes, over this server's limit of " + std::to_string(opt.max_upload_bytes));
      return true;
    }
    return false;
  }

  void publish(const httplib::Request& req, httplib::Response& res, std::string name) {
    if (refused_before_body(req, res)) return;
    const std::string ext = kModelExtension;
    if (name.size() > ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0)
      name.resize(name.size() - ext.size());
    if (const std::string problem = model_name_problem(name); !problem.empty())
      return send_error(res, 400, problem);
    if (req.body.size() > opt.max_upload_bytes)
      return send_error(res, 413,
                        "model is " + std::to_string(req.body.size()) +
                            " bytes, over this server's limit of " +
                            std::to_string(opt.max_upload_bytes));
    ModelCatalog::Published p;
    try {
      p = catalog.publish(name, req.body);
    } catch (const Error& e) {
      return send_error(res, 400, std::string("invalid model: ") + e.what());
    } catch (const std::exception& e) {
      return send_error(res, 500, std::string("could not store the model: ") + e.what());
    }
    notice(std::string(p.replaced ? "replaced " : "published ") + p.entry.file + " (" +
           std::to_string(p.entry.size) + " bytes, sha256 " + p.entry.sha256 + ")");
    json body = p.entry.to_json();
    body["replaced"] = p.replaced;
    send_json(res, p.replaced ? 200 : 201, body);
  }

  void install_routes() {
    svr.set_payload_max_length(size_t(opt.max_upload_bytes));
    svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
      t_request_start = std::chrono::steady_clock::now();
      return refused_before_body(req, res) ? httplib::Server::HandlerResponse::Handled
                                           : httplib::Server::HandlerResponse::Unhandled;
    });
    // "Expect: 100-continue" is answered before routing: refuse there too, so a client that
    // waits for 100 never sends the body at all.
    svr.set_expect_100_continue_handler(
        [this](const httplib::Request& req, httplib::Response& res) {
          t_request_start = std::chrono::steady_clock::now();
          return refused_before_body(req, res) ? res.status : 100;
        });
    svr.set_gate_error_body([](int, const std::string& message) {
      return json_text(json{{"error", message}});
    });
    svr.Get("/health", [](const httplib::Request&, httplib::Response& res) {
      res.set_header("Cache-Control", "no-store");
      res.set_content("{\"status\":\"ok\"}\n", "application/json; charset=utf-8");
    });
    svr.Get("/api/models",
            [this](const httplib::Request&, httplib::Response& res) { list_models(res); });
    svr.Put("/api/models/(.+)", [this](const httplib::Request& req, httplib::Response& res) {
      publish(req, res, req.matches[1]);
    });
    svr.Get("/models/(.*)", [this](const httplib::Request& req, httplib::Response& res) {
      serve_model(req, res, req.matches[1]);
    });
    svr.Get("/.*",
            [this](const httplib::Request& req, httplib::Response& res) { serve_site(req, res); });
    svr.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
      // httplib applies a Range to error bodies too, and a 404 cut to its first bytes is not
      // JSON. The request is process_request's own (non-const) object, so it may be changed.
      const_cast<httplib::Request&>(req).ranges.clear();
      if (!res.body.empty()) return;
      if (res.status == 413) {
        // httplib caps form-encoded bodies at 8 KiB whatever the limit (curl's default type).
        const bool form =
            req.get_header_value("Content-Type").find("x-www-form-urlencoded") != std::string::npos;
        return send_error(res, 413,
                          form ? "form-encoded body too large: send the model as "
                                 "Content-Type: application/octet-stream"
                               : "request body over this server's limit of " +
                                     std::to_string(opt.max_upload_bytes) + " bytes");
      }
      send_error(res, res.status, "HTTP " + std::to_string(res.status) + reason(res.status));
    });
    svr.set_exception_handler(
        [](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
          std::string what = "internal error";
          try {
            if (ep) std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            what = e.what();
          } catch (...) {
          }
          send_error(res, 500, what);
        });
    svr.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      if (!opt.log) return;
      const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() -
                                                                  t_request_start)
                            .count();
      std::fprintf(opt.log, "%s %s \"%s %s\" %d %zu %.1fms\n", time_now("%Y-%m-%dT%H:%M:%SZ").c_str(),
                   req.remote_addr.c_str(), req.method.c_str(), req.target.c_str(), res.status,
                   res.body.size(), ms);
      std::fflush(opt.log);
    });
  }

  ServerOptions opt;
  std::string web_real, models_real;
  ModelCatalog catalog;
  GatedServer svr;
  std::mutex hash_mu;
  std::map<std::string, std::pair<FileIdentity, std::string>> hashes;
  std::atomic<bool> index_warned{false};
  bool bound = false;
};

HttpServer::HttpServer(ServerOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {
  for (const std::string& name : impl_->catalog.removed_temporaries())
    impl_->notice("removed " + impl_->catalog.path_of(name) +
                  ", left by a process killed while writing it");
  impl_->install_routes();
  impl_->update_index();
}

HttpServer::~HttpServer() {
  stop();
}

int HttpServer::bind() {
  Impl& m = *impl_;
  int port = m.opt.port;
  if (port == 0) {
    port = m.svr.bind_to_any_port(m.opt.host);
  } else if (!m.svr.bind_to_port(m.opt.host, port)) {
    port = -1;
  }
  if (port <= 0)
    throw Error("cannot listen on " + m.opt.host + ":" + std::to_string(m.opt.port) +
                " (address in use, or not an address of this machine?)");
  m.bound = true;
  return port;
}

bool HttpServer::run() {
  if (!impl_->bound) bind();
  return impl_->svr.listen_gated();
}

void HttpServer::stop() {
  if (impl_) impl_->svr.stop_gated();
}

std::string HttpServer::answer(const std::string& raw_request) {
  return impl_->svr.answer(raw_request);
}

bool HttpServer::running() const {
  return impl_->svr.is_running();
}

}  // namespace ebm
