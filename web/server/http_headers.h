// What the server says about a file: its media type, how long it may be cached, and whether a
// conditional request already has it.
#pragma once

#include <string>

namespace ebm {

// By extension: text/html, text/javascript (.js, .mjs), text/css, application/wasm,
// application/json, image/png, ...; application/octet-stream for anything else (models).
std::string content_type_for(const std::string& path);

// "no-cache" (always revalidate with the ETag) for pages and ordinary assets; a year and
// immutable for content-addressed requests, i.e. ones whose ?v= names the file's SHA-256.
std::string cache_control_for(const std::string& path, bool content_addressed);

std::string quoted_etag(const std::string& sha256);  // "\"<hex>\""

// True if an If-None-Match header value ("*", "\"a\", W/\"b\"") matches the strong ETag.
bool etag_matches(const std::string& if_none_match, const std::string& etag);

// Constant-time comparison of a presented secret with the expected one: the time taken does not
// depend on where, or whether, they differ (both are hashed first, so lengths leak nothing).
bool secrets_equal(const std::string& presented, const std::string& expected);

}  // namespace ebm
