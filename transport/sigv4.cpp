#include "transport/sigv4.hpp"

#include "messages/text.hpp"
#include "transport/digest.hpp"
#include "transport/url.hpp"
#include "transport/wall_clock.hpp"

#include <algorithm>
#include <cctype>
#include <map>
#include <sstream>
#include <stdexcept>

namespace ghscale {

namespace {

constexpr std::string_view algorithm = "AWS4-HMAC-SHA256";

/// Headers botocore leaves unsigned: proxies may add, drop or rewrite them.
constexpr std::string_view unsigned_headers[]
  = {"connection", "expect", "keep-alive", "proxy-authenticate",
     "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade",
     "user-agent", "x-amzn-trace-id"};

/// Headers a signature sets; an earlier signature's are replaced.
constexpr std::string_view signature_headers[]
  = {"host", "x-amz-date", "x-amz-security-token", "authorization"};

template <size_t N>
bool is_one_of(const std::string& lower_name, const std::string_view (&names)[N]) {
  return std::find(std::begin(names), std::end(names), lower_name) != std::end(names);
}

/// Trimall: no leading or trailing whitespace, inner runs become one space.
std::string trim_all(std::string_view value) {
  std::istringstream words{std::string{value}};
  std::string word;
  std::string out;
  while (words >> word) {
    if (!out.empty())
      out += ' ';
    out += word;
  }
  return out;
}

/// RFC 3986 dot-segment removal plus collapsing of empty segments (AWS wants
/// "//a//" signed as "/a/"), then each segment URI-encoded. The path is
/// encoded as written, so an already-escaped path is escaped once more, as
/// SigV4 prescribes for every service but S3.
std::string canonical_uri(std::string_view path) {
  if (path.empty())
    return "/";
  std::vector<std::string_view> segments;
  size_t start = 0;
  while (start <= path.size()) {
    auto end = std::min(path.find('/', start), path.size());
    auto segment = path.substr(start, end - start);
    if (segment == "..") {
      if (!segments.empty())
        segments.pop_back();
    } else if (!segment.empty() && segment != ".") {
      segments.push_back(segment);
    }
    start = end + 1;
  }
  std::string out = path.front() == '/' ? "/" : "";
  for (size_t i = 0; i < segments.size(); ++i)
    out += (i > 0 ? "/" : "") + uri_encode(segments[i]);
  if (path.back() == '/' && !segments.empty())
    out += '/';
  return out;
}

/// Each key and value decoded then encoded again (so raw and escaped input
/// sign alike), sorted by key, then value.
std::string canonical_query(std::string_view query) {
  std::vector<std::pair<std::string, std::string>> pairs;
  size_t start = 0;
  while (!query.empty() && start <= query.size()) {
    auto end = std::min(query.find('&', start), query.size());
    auto pair = query.substr(start, end - start);
    auto eq = pair.find('=');
    auto value = eq == std::string_view::npos ? std::string_view{}
                                              : pair.substr(eq + 1);
    pairs.emplace_back(uri_encode(uri_decode(pair.substr(0, eq))),
                       uri_encode(uri_decode(value)));
    start = end + 1;
  }
  std::sort(pairs.begin(), pairs.end());
  std::string out;
  for (const auto& [key, value] : pairs)
    out += (out.empty() ? "" : "&") + key + "=" + value;
  return out;
}

/// Lower-cased names in order, each with its values (trimmed) joined by ','
/// in the order they appear.
std::map<std::string, std::string>
canonical_header_map(const std::vector<http_header>& headers) {
  std::map<std::string, std::string> out;
  for (const auto& h : headers) {
    auto [it, fresh] = out.try_emplace(ascii_lower(h.name), trim_all(h.value));
    if (!fresh)
      it->second += "," + trim_all(h.value);
  }
  return out;
}

std::string signing_key(const aws_credentials& creds, std::string_view date,
                        const sigv4_scope& scope) {
  auto key = hmac_sha256("AWS4" + creds.secret_access_key.value, date);
  key = hmac_sha256(key, scope.region);
  key = hmac_sha256(key, scope.service);
  return hmac_sha256(key, "aws4_request");
}

template <size_t N>
void remove_headers(std::vector<http_header>& headers,
                    const std::string_view (&names)[N]) {
  headers.erase(std::remove_if(headers.begin(), headers.end(),
                               [&](const http_header& h) {
                                 return is_one_of(ascii_lower(h.name), names);
                               }),
                headers.end());
}

} // namespace

sigv4_result sigv4(std::string_view method, std::string_view path,
                   std::string_view query,
                   const std::vector<http_header>& headers,
                   std::string_view payload, const aws_credentials& creds,
                   const sigv4_scope& scope, caf::timespan wall_time) {
  auto header_map = canonical_header_map(headers);
  std::string canonical_headers;
  std::string signed_headers;
  for (const auto& [name, value] : header_map) {
    canonical_headers += name + ":" + value + "\n";
    signed_headers += (signed_headers.empty() ? "" : ";") + name;
  }
  sigv4_result out;
  out.canonical_request = std::string{method} + "\n" + canonical_uri(path) + "\n"
                          + canonical_query(query) + "\n" + canonical_headers
                          + "\n" + signed_headers + "\n" + hex(sha256(payload));
  auto timestamp = amz_date(wall_time);
  auto date = timestamp.substr(0, 8);
  auto credential_scope = date + "/" + scope.region + "/" + scope.service
                          + "/aws4_request";
  out.string_to_sign = std::string{algorithm} + "\n" + timestamp + "\n"
                       + credential_scope + "\n"
                       + hex(sha256(out.canonical_request));
  out.signature = hex(hmac_sha256(signing_key(creds, date, scope),
                                  out.string_to_sign));
  out.authorization = std::string{algorithm} + " Credential="
                      + creds.access_key_id + "/" + credential_scope
                      + ", SignedHeaders=" + signed_headers
                      + ", Signature=" + out.signature;
  return out;
}

void sign_request(http_request& req, const aws_credentials& creds,
                  const sigv4_scope& scope, caf::timespan now) {
  auto url = parse_url(req.url);
  if (!url)
    throw std::invalid_argument("sign_request: " + describe(url.error()));
  remove_headers(req.headers, signature_headers);
  req.headers.push_back({"host", url->authority()});
  req.headers.push_back({"x-amz-date", amz_date(now)});
  if (!creds.session_token.empty())
    req.headers.push_back({"x-amz-security-token", creds.session_token.value});
  std::vector<http_header> to_sign;
  std::copy_if(req.headers.begin(), req.headers.end(), std::back_inserter(to_sign),
               [](const http_header& h) {
                 return !is_one_of(ascii_lower(h.name), unsigned_headers);
               });
  auto signature = sigv4(req.method, url->path, url->query, to_sign,
                         req.body.value, creds, scope, now);
  req.headers.push_back({"authorization", std::move(signature.authorization)});
}

} // namespace ghscale
