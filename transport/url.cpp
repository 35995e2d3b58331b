#include "transport/url.hpp"

#include "messages/text.hpp"
#include "messages/types.hpp"

#include <algorithm>
#include <cctype>

namespace ghscale {

namespace {

int default_port(const std::string& scheme) {
  return scheme == "https" ? 443 : 80;
}

bool unreserved(unsigned char c) {
  return std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~';
}

int hex_value(char c) {
  if (c >= '0' && c <= '9')
    return c - '0';
  if (c >= 'a' && c <= 'f')
    return c - 'a' + 10;
  if (c >= 'A' && c <= 'F')
    return c - 'A' + 10;
  return -1;
}

caf::error bad_url(std::string_view shown, const std::string& why) {
  return caf::make_error(errc::invalid_config,
                         "invalid URL '" + std::string{shown} + "': " + why);
}

/// Splits "host[:port]" (host possibly "[v6]") into `out`.
caf::error parse_authority(std::string_view authority, std::string_view url,
                           url_parts& out) {
  size_t host_end = authority.size();
  if (!authority.empty() && authority.front() == '[') {
    auto close = authority.find(']');
    if (close == std::string_view::npos)
      return bad_url(url, "unterminated IPv6 literal");
    host_end = close + 1;
  } else if (auto colon = authority.rfind(':'); colon != std::string_view::npos) {
    host_end = colon;
  }
  out.host = std::string{authority.substr(0, host_end)};
  if (out.host.empty())
    return bad_url(url, "no host");
  auto rest = authority.substr(host_end);
  if (rest.empty())
    return caf::none;
  auto digits = rest.substr(1);
  if (rest.front() != ':' || digits.empty() || digits.size() > 5
      || !std::all_of(digits.begin(), digits.end(),
                      [](unsigned char c) { return std::isdigit(c); }))
    return bad_url(url, "bad port");
  out.port = std::stoi(std::string{digits});
  if (out.port < 1 || out.port > 65535)
    return bad_url(url, "port out of range");
  return caf::none;
}

} // namespace

std::string url_parts::authority() const {
  if (port == 0 || port == default_port(scheme))
    return host;
  return host + ":" + std::to_string(port);
}

caf::expected<url_parts> parse_url(std::string_view url) {
  url_parts out;
  auto sep = url.find("://");
  if (sep == std::string_view::npos)
    return bad_url(url, "no scheme");
  out.scheme = ascii_lower(url.substr(0, sep));
  auto rest = url.substr(sep + 3);
  auto authority_end = rest.find_first_of("/?#");
  auto authority = rest.substr(0, authority_end);
  if (auto at = authority.rfind('@'); at != std::string_view::npos) {
    // Show the URL without its userinfo: it may hold a password.
    std::string shown = std::string{url.substr(0, sep + 3)} + "***"
                        + std::string{rest.substr(at)};
    return bad_url(shown, "credentials in URLs are not accepted");
  }
  if (out.scheme != "http" && out.scheme != "https")
    return bad_url(url, "scheme must be http or https");
  if (auto err = parse_authority(authority, url, out))
    return err;
  if (authority_end == std::string_view::npos)
    return out;
  auto tail = rest.substr(authority_end);
  tail = tail.substr(0, tail.find('#'));
  auto question = tail.find('?');
  auto path = tail.substr(0, question);
  out.path = path.empty() ? "/" : std::string{path};
  if (question != std::string_view::npos)
    out.query = std::string{tail.substr(question + 1)};
  return out;
}

std::string uri_encode(std::string_view s, bool keep_slash) {
  static constexpr char digits[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if (unreserved(c) || (keep_slash && c == '/')) {
      out += ch;
    } else {
      out += '%';
      out += digits[c >> 4];
      out += digits[c & 0xF];
    }
  }
  return out;
}

std::string uri_decode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    bool escape = s[i] == '%' && i + 2 < s.size();
    int high = escape ? hex_value(s[i + 1]) : -1;
    int low = escape ? hex_value(s[i + 2]) : -1;
    if (high >= 0 && low >= 0) {
      out += static_cast<char>(high * 16 + low);
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::optional<std::string> form_field(std::string_view body, std::string_view name) {
  while (!body.empty()) {
    auto amp = body.find('&');
    auto pair = body.substr(0, amp);
    body = amp == std::string_view::npos ? std::string_view{} : body.substr(amp + 1);
    auto eq = pair.find('=');
    if (pair.substr(0, eq) != name)
      continue;
    std::string value{eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1)};
    std::replace(value.begin(), value.end(), '+', ' ');
    return uri_decode(value);
  }
  return std::nullopt;
}

std::string form_encode(
  const std::vector<std::pair<std::string, std::string>>& fields) {
  std::string out;
  for (const auto& [key, value] : fields) {
    if (!out.empty())
      out += '&';
    out += uri_encode(key);
    out += '=';
    out += uri_encode(value);
  }
  return out;
}

} // namespace ghscale
