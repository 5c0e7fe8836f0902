// Publishing a model file: to a running ebm-serve (PUT /api/models/<name> with a bearer token) or
// straight into a models folder (the same atomic write and index.json update the server does).
// The bytes are validated with the runtime first, so a bad file never leaves this machine.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace ebm {

struct PublishResult {
  int status = 0;       // HTTP status (200 replaced, 201 created; 0 for a folder target)
  nlohmann::json body;  // the server's JSON answer (or the catalog entry for a folder)
  std::string text;     // the answer as received, for printing
  bool ok() const { return status == 0 || (status >= 200 && status < 300); }
};

// True for "http://..." and "https://..." targets; anything else is a models folder.
bool is_server_target(const std::string& target);

// Uploads `bytes` as model `name` to `server` ("http://host:port", optionally with a base path,
// e.g. "http://host/ebm"). Throws ebm::Error if the bytes are not a valid model, the name is not
// allowed, or the server cannot be reached; an answer from the server, even a refusal (401, 400,
// 413), is returned, not thrown.
PublishResult publish_to_server(const std::string& server, const std::string& token,
                                const std::string& name, const std::vector<uint8_t>& bytes,
                                int timeout_seconds = 60);

// Writes `bytes` as <folder>/<name>.safetensors (atomically) and updates <folder>/index.json.
// Throws ebm::Error on an invalid model or name, or a folder that cannot be written.
PublishResult publish_to_folder(const std::string& folder, const std::string& name,
                                const std::vector<uint8_t>& bytes);

// Either of the above, by the form of `target`; name "" means the file's own name. Reads the
// file, so errors name it.
PublishResult publish_model_file(const std::string& path, const std::string& target,
                                 const std::string& token, std::string name = "");

}  // namespace ebm
