#pragma once
// URLs as the HTTP engine and the SigV4 signer see them, and the RFC 3986
// percent-encoding AWS wants (in canonical requests and query-protocol bodies).
#include <caf/expected.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ghscale {

/// An absolute http(s) URL split into the parts a signer needs.
struct url_parts {
  std::string scheme; // "http" or "https", lower-cased
  std::string host;   // as written; IPv6 literals keep their brackets
  int port = 0;       // 0: scheme default
  std::string path = "/";
  std::string query; // raw, without '?'
  /// host, plus :port when not the scheme's default (the Host header).
  std::string authority() const;
};

/// Parses scheme://host[:port][/path][?query][#fragment]. Fails with
/// errc::invalid_config naming the URL; rejects userinfo (user:pass@), which
/// is left out of the error so no credential reaches a log.
caf::expected<url_parts> parse_url(std::string_view url);

/// RFC 3986: everything except A-Z a-z 0-9 - _ . ~ (and '/' when
/// `keep_slash`) percent-encoded with upper-case hex, byte by byte (UTF-8).
std::string uri_encode(std::string_view s, bool keep_slash = false);

/// Reverses percent-encoding; a malformed escape is kept as written.
std::string uri_decode(std::string_view s);

/// The value of field `name` of an application/x-www-form-urlencoded body
/// ('+' is a space, %XX a byte), or nothing if it has none.
std::optional<std::string> form_field(std::string_view body, std::string_view name);

/// k=v&k2=v2, each uri_encode'd (AWS query protocol bodies).
std::string form_encode(
  const std::vector<std::pair<std::string, std::string>>& fields);

} // namespace ghscale
