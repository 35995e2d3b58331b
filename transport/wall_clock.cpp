#include "transport/wall_clock.hpp"

#include "messages/types.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <iomanip>
#include <locale>
#include <sstream>

namespace ghscale {

caf::timespan wall_now() {
  return std::chrono::duration_cast<caf::timespan>(
    std::chrono::system_clock::now().time_since_epoch());
}

namespace {

caf::error bad_time(std::string_view text, const char* format) {
  return caf::make_error(errc::rejected, "not a valid " + std::string{format}
                                           + " timestamp: '"
                                           + std::string{text.substr(0, 64)} + "'");
}

/// Years a timestamp from outside may name: GitHub's and AWS's are recent,
/// and all of these fit a timespan.
constexpr int first_year = 1900;
constexpr int last_year = 2200;

caf::expected<caf::timespan> from_tm(std::tm& tm, std::string_view text,
                                     const char* format) {
  if (tm.tm_year + 1900 < first_year || tm.tm_year + 1900 > last_year)
    return caf::make_error(errc::rejected,
                           std::string{format} + " timestamp out of range (years "
                             + std::to_string(first_year) + " to "
                             + std::to_string(last_year) + "): '"
                             + std::string{text.substr(0, 64)} + "'");
  return caf::timespan{std::chrono::seconds{timegm(&tm)}};
}

} // namespace

caf::expected<caf::timespan> parse_rfc3339(std::string_view text) {
  std::tm tm{};
  int consumed = 0;
  std::string s{text};
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
                  &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed)
        != 6)
    return bad_time(text, "RFC 3339");
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  auto whole = from_tm(tm, text, "RFC 3339");
  if (!whole)
    return whole;
  caf::timespan result = *whole;
  auto rest = std::string_view{s}.substr(static_cast<size_t>(consumed));
  if (!rest.empty() && rest.front() == '.') {
    // Fractional seconds: keep nanosecond precision, ignore the rest.
    size_t i = 1;
    int64_t nanos = 0;
    int64_t scale = 100'000'000;
    for (; i < rest.size() && rest[i] >= '0' && rest[i] <= '9'; ++i, scale /= 10)
      nanos += (rest[i] - '0') * scale;
    result += std::chrono::nanoseconds{nanos};
    rest.remove_prefix(i);
  }
  if (rest == "Z" || rest == "z" || rest.empty())
    return result;
  int oh = 0;
  int om = 0;
  if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-')
      && std::sscanf(std::string{rest.substr(1)}.c_str(), "%2d:%2d", &oh, &om) == 2) {
    caf::timespan offset = std::chrono::hours{oh} + std::chrono::minutes{om};
    return rest[0] == '+' ? result - offset : result + offset;
  }
  return bad_time(text, "RFC 3339");
}

caf::expected<caf::timespan> parse_http_date(std::string_view text) {
  std::tm tm{};
  std::istringstream in{std::string{text}};
  in.imbue(std::locale::classic());
  in >> std::get_time(&tm, "%a, %d %b %Y %H:%M:%S GMT");
  if (in.fail())
    return bad_time(text, "HTTP-date");
  return from_tm(tm, text, "HTTP-date");
}

namespace {

std::string utc_format(caf::timespan since_epoch, const char* format) {
  auto secs = static_cast<std::time_t>(
    std::chrono::duration_cast<std::chrono::seconds>(since_epoch).count());
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, format, &tm);
  return buf;
}

} // namespace

std::string rfc3339(caf::timespan since_epoch) {
  return utc_format(since_epoch, "%Y-%m-%dT%H:%M:%SZ");
}

std::string amz_date(caf::timespan since_epoch) {
  return utc_format(since_epoch, "%Y%m%dT%H%M%SZ");
}

} // namespace ghscale
