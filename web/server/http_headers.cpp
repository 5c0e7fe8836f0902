#include "http_headers.h"

#include <cstdint>

#include "ebm/sha256.h"

namespace ebm {

namespace {

std::string extension(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const size_t dot = path.find_last_of('.');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash)) return "";
  std::string ext = path.substr(dot + 1);
  for (char& c : ext)
    if (c >= 'A' && c <= 'Z') c = char(c - 'A' + 'a');
  return ext;
}

}  // namespace

std::string content_type_for(const std::string& path) {
  const std::string ext = extension(path);
  if (ext == "html" || ext == "htm") return "text/html; charset=utf-8";
  if (ext == "js" || ext == "mjs") return "text/javascript; charset=utf-8";
  if (ext == "css") return "text/css; charset=utf-8";
  if (ext == "wasm") return "application/wasm";
  if (ext == "json") return "application/json; charset=utf-8";
  if (ext == "png") return "image/png";
  if (ext == "jpg" || ext == "jpeg") return "image/jpeg";
  if (ext == "svg") return "image/svg+xml";
  if (ext == "ico") return "image/x-icon";
  if (ext == "txt" || ext == "md") return "text/plain; charset=utf-8";
  return "application/octet-stream";
}

std::string cache_control_for(const std::string& path, bool content_addressed) {
  // A page is never immutable: its URL is what a visitor types, and it names the other assets.
  const bool page = content_type_for(path).rfind("text/html", 0) == 0;
  if (content_addressed && !page) return "public, max-age=31536000, immutable";
  return "no-cache";
}

std::string quoted_etag(const std::string& sha256) {
  return "\"" + sha256 + "\"";
}

bool etag_matches(const std::string& if_none_match, const std::string& etag) {
  size_t i = 0;
  const std::string& s = if_none_match;
  while (i < s.size()) {
    while (i < s.size() && (s[i] == ' ' || s[i] == '\t' || s[i] == ',')) ++i;
    if (i >= s.size()) break;
    if (s[i] == '*') return true;
    if (s.compare(i, 2, "W/") == 0) i += 2;  // weak comparison, as If-None-Match uses
    if (i >= s.size() || s[i] != '"') return false;
    const size_t close = s.find('"', i + 1);
    if (close == std::string::npos) return false;
    if (s.compare(i, close - i + 1, etag) == 0) return true;
    i = close + 1;
  }
  return false;
}

bool secrets_equal(const std::string& presented, const std::string& expected) {
  const std::string a = sha256_hex(presented), b = sha256_hex(expected);
  uint8_t diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = uint8_t(diff | (a[i] ^ b[i]));
  return diff == 0;
}

}  // namespace ebm
