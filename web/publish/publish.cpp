#include "ebm/publish.h"

#include <httplib.h>

#include "ebm/catalog.h"
#include "ebm/error.h"
#include "ebm/fileio.h"
#include "ebm/model.h"
#include "ebm/model_name.h"

namespace ebm {

namespace {

void validate(const std::string& name, const std::vector<uint8_t>& bytes) {
  if (const std::string problem = model_name_problem(name); !problem.empty()) throw Error(problem);
  try {
    parse_model(bytes.data(), bytes.size());
  } catch (const Error& e) {
    throw Error(std::string("not a valid model, nothing was published: ") + e.what());
  }
}

// "http://host:port/base/" -> {"http://host:port", "/base"}.
void split_url(const std::string& url, std::string* origin, std::string* base) {
  const size_t scheme_end = url.find("://");
  const size_t path_start = url.find('/', scheme_end == std::string::npos ? 0 : scheme_end + 3);
  *origin = url.substr(0, path_start);
  *base = path_start == std::string::npos ? "" : url.substr(path_start);
  while (!base->empty() && base->back() == '/') base->pop_back();
  if (origin->size() <= scheme_end + 3) throw Error("server URL '" + url + "' has no host");
}

}  // namespace

bool is_server_target(const std::string& target) {
  return target.rfind("http://", 0) == 0 || target.rfind("https://", 0) == 0;
}

PublishResult publish_to_server(const std::string& server, const std::string& token,
                                const std::string& name, const std::vector<uint8_t>& bytes,
                                int timeout_seconds) {
  validate(name, bytes);
  if (!is_server_target(server))
    throw Error("server URL '" + server + "' must start with http:// or https://");
  std::string origin, base;
  split_url(server, &origin, &base);
  httplib::Client client(origin);
  if (!client.is_valid()) throw Error("cannot use server URL '" + server + "'");
  client.set_connection_timeout(10);
  client.set_read_timeout(timeout_seconds);
  client.set_write_timeout(timeout_seconds);
  httplib::Headers headers;
  if (!token.empty()) headers.emplace("Authorization", "Bearer " + token);
  const std::string path = base + "/api/models/" + name;
  const httplib::Result res =
      client.Put(path.c_str(), headers, reinterpret_cast<const char*>(bytes.data()), bytes.size(),
                 "application/octet-stream");
  if (!res)
    throw Error("cannot reach " + server + " (" +
                (res.error() == httplib::Error::Connection
                     ? std::string("connection refused or host unreachable")
                     : "HTTP client error: " + httplib::to_string(res.error())) +
                "): is ebm-serve running there?");
  PublishResult out;
  out.status = res->status;
  out.text = res->body;
  out.body = nlohmann::json::parse(res->body, nullptr, /*allow_exceptions=*/false);
  if (out.body.is_discarded()) out.body = nlohmann::json{{"error", res->body}};
  return out;
}

PublishResult publish_to_folder(const std::string& folder, const std::string& name,
                                const std::vector<uint8_t>& bytes) {
  validate(name, bytes);
  ModelCatalog catalog(folder);
  const ModelCatalog::Published p =
      catalog.publish(name, std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  PublishResult out;
  out.body = p.entry.to_json();
  out.body["replaced"] = p.replaced;
  out.text = out.body.dump(2);
  return out;
}

PublishResult publish_model_file(const std::string& path, const std::string& target,
                                 const std::string& token, std::string name) {
  if (name.empty()) name = model_name_from_path(path);
  const std::vector<uint8_t> bytes = read_file(path, ModelCatalog::kMaxModelBytes);
  try {
    return is_server_target(target) ? publish_to_server(target, token, name, bytes)
                                    : publish_to_folder(target, name, bytes);
  } catch (const Error& e) {
    throw Error("'" + path + "': " + e.what());
  }
}

}  // namespace ebm
