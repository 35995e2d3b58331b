#include "transport/idle_schedule.hpp"

#include "messages/text.hpp"
#include "messages/types.hpp"

#include <date/tz.h>

#include <array>
#include <cctype>
#include <charconv>
#include <chrono>
#include <exception>
#include <optional>
#include <variant>

namespace ghscale {

namespace {

/// One of the five fields: its name in errors, its range, and its names.
struct field_spec {
  const char* what;
  int first;
  int last;
  const char* const* names = nullptr; // names[i] stands for first_name + i
  int name_count = 0;
  int first_name = 0;
};

constexpr const char* month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                       "jul", "aug", "sep", "oct", "nov", "dec"};
constexpr const char* weekday_names[] = {"sun", "mon", "tue", "wed",
                                         "thu", "fri", "sat"};

constexpr std::array<field_spec, 5> fields{{
  {"minute", 0, 59},
  {"hour", 0, 23},
  {"day-of-month", 1, 31},
  {"month", 1, 12, month_names, 12, 1},
  // 7 is Sunday as well as 0 (folded after parsing).
  {"day-of-week", 0, 7, weekday_names, 7, 0},
}};

/// Why one field failed; parse_cron adds the expression and the field.
using field_error = std::string;

std::optional<int> parse_number(std::string_view text) {
  int value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size())
    return std::nullopt;
  return value;
}

/// A number or, where the field has them, a name.
std::variant<int, field_error> parse_value(const field_spec& spec,
                                           std::string_view text) {
  if (auto number = parse_number(text)) {
    if (*number < spec.first || *number > spec.last)
      return std::string{text} + " is outside " + std::to_string(spec.first)
             + "-" + std::to_string(spec.last);
    return *number;
  }
  auto lowered = ascii_lower(text);
  for (int i = 0; i < spec.name_count; ++i)
    if (lowered == spec.names[i])
      return spec.first_name + i;
  return "'" + std::string{text} + "' is not a number"
         + (spec.name_count > 0 ? std::string{" or a name"} : std::string{});
}

/// Adds one list item (`*`, `a`, `a-b`, each optionally `/step`) to `bits`.
std::optional<field_error> parse_item(const field_spec& spec,
                                      std::string_view item, uint64_t& bits) {
  std::string_view range = item;
  int step = 1;
  auto slash = item.find('/');
  if (slash != std::string_view::npos) {
    range = item.substr(0, slash);
    auto parsed = parse_number(item.substr(slash + 1));
    if (!parsed || *parsed < 1)
      return "step '" + std::string{item.substr(slash + 1)}
             + "' is not a positive number";
    step = *parsed;
  }
  int low = spec.first;
  int high = spec.last;
  if (range != "*") {
    auto dash = range.find('-');
    auto low_value = parse_value(spec, range.substr(0, dash));
    if (auto* err = std::get_if<field_error>(&low_value))
      return *err;
    low = high = std::get<int>(low_value);
    if (dash != std::string_view::npos) {
      auto high_value = parse_value(spec, range.substr(dash + 1));
      if (auto* err = std::get_if<field_error>(&high_value))
        return *err;
      high = std::get<int>(high_value);
      if (high < low)
        return "range '" + std::string{range} + "' runs backwards";
    } else if (slash != std::string_view::npos) {
      return "a step needs '*' or a range before it, not '"
             + std::string{range} + "'";
    }
  }
  for (int value = low; value <= high; value += step)
    bits |= uint64_t{1} << value;
  return std::nullopt;
}

std::variant<uint64_t, field_error> parse_field(const field_spec& spec,
                                                std::string_view text) {
  uint64_t bits = 0;
  while (true) {
    auto comma = text.find(',');
    auto item = text.substr(0, comma);
    if (item.empty())
      return field_error{"empty list item"};
    if (auto err = parse_item(spec, item, bits))
      return *err;
    if (comma == std::string_view::npos)
      return bits;
    text.remove_prefix(comma + 1);
  }
}

std::vector<std::string_view> split_fields(std::string_view text) {
  std::vector<std::string_view> out;
  text = trim_space(text);
  while (!text.empty()) {
    size_t end = 0;
    while (end < text.size() && !std::isspace(static_cast<unsigned char>(text[end])))
      ++end;
    out.push_back(text.substr(0, end));
    text = trim_space(text.substr(end));
  }
  return out;
}

caf::error unknown_zone(const std::string& timezone) {
  return caf::make_error(errc::invalid_config,
                         "unknown timezone '" + timezone + "'");
}

/// The zone, or nullptr if the time zone database does not know the name.
const date::time_zone* find_zone(const std::string& timezone) {
  try {
    return date::locate_zone(timezone);
  } catch (const std::exception&) { // the library's way to say "no such zone"
    return nullptr;
  }
}

caf::error window_error(size_t index, const caf::error& err) {
  return caf::make_error(errc::invalid_config,
                         "idle_schedule[" + std::to_string(index)
                           + "]: " + context_of(err));
}

} // namespace

caf::expected<cron_schedule> parse_cron(std::string_view text) {
  auto parts = split_fields(text);
  auto where = "cron '" + std::string{text} + "'";
  if (parts.size() != fields.size())
    return caf::make_error(errc::invalid_config,
                           where + ": expected 5 fields (minute hour "
                                   "day-of-month month day-of-week), got "
                             + std::to_string(parts.size()));
  std::array<uint64_t, 5> bits{};
  for (size_t i = 0; i < fields.size(); ++i) {
    auto parsed = parse_field(fields[i], parts[i]);
    if (auto* err = std::get_if<field_error>(&parsed))
      return caf::make_error(errc::invalid_config,
                             where + ": " + fields[i].what + " field '"
                               + std::string{parts[i]} + "': " + *err);
    bits[i] = std::get<uint64_t>(parsed);
  }
  constexpr uint64_t sunday_as_seven = uint64_t{1} << 7;
  if (bits[4] & sunday_as_seven)
    bits[4] = (bits[4] & ~sunday_as_seven) | 1;
  cron_schedule out;
  out.minutes = std::bitset<60>{bits[0]};
  out.hours = std::bitset<24>{bits[1]};
  out.days_of_month = std::bitset<32>{bits[2]};
  out.months = std::bitset<13>{bits[3]};
  out.days_of_week = std::bitset<7>{bits[4]};
  out.day_of_month_star = parts[2].front() == '*';
  out.day_of_week_star = parts[4].front() == '*';
  return out;
}

caf::expected<bool> cron_matches(const cron_schedule& schedule,
                                 const std::string& timezone,
                                 caf::timespan unix_time) {
  auto zone = find_zone(timezone);
  if (zone == nullptr)
    return unknown_zone(timezone);
  auto local = zone->to_local(
    date::sys_seconds{std::chrono::floor<std::chrono::seconds>(unix_time)});
  auto day = date::floor<date::days>(local);
  date::year_month_day date{day};
  date::hh_mm_ss<std::chrono::seconds> time_of_day{local - day};
  auto hour = static_cast<size_t>(time_of_day.hours().count());
  auto minute = static_cast<size_t>(time_of_day.minutes().count());
  auto month = static_cast<unsigned>(date.month());
  auto day_of_month = static_cast<unsigned>(date.day());
  auto day_of_week = date::weekday{day}.c_encoding(); // 0 = Sunday
  bool dom = schedule.days_of_month.test(day_of_month);
  bool dow = schedule.days_of_week.test(day_of_week);
  bool day_matches = schedule.day_of_month_star || schedule.day_of_week_star
                       ? dom && dow
                       : dom || dow;
  return schedule.minutes.test(minute) && schedule.hours.test(hour)
         && schedule.months.test(month) && day_matches;
}

caf::expected<int32_t> idle_minimum(const std::vector<idle_window>& schedule,
                                    int32_t fallback, caf::timespan unix_time) {
  for (size_t i = 0; i < schedule.size(); ++i) {
    auto& window = schedule[i];
    auto parsed = parse_cron(window.cron);
    if (!parsed)
      return window_error(i, parsed.error());
    auto matches = cron_matches(*parsed, window.timezone, unix_time);
    if (!matches)
      return window_error(i, matches.error());
    if (*matches)
      return window.min_idle;
  }
  return fallback;
}

caf::error check_idle_schedule(const std::vector<idle_window>& schedule) {
  for (size_t i = 0; i < schedule.size(); ++i) {
    auto& window = schedule[i];
    if (auto parsed = parse_cron(window.cron); !parsed)
      return window_error(i, parsed.error());
    if (find_zone(window.timezone) == nullptr)
      return window_error(i, unknown_zone(window.timezone));
    if (window.min_idle < 0)
      return caf::make_error(errc::invalid_config,
                             "idle_schedule[" + std::to_string(i)
                               + "]: min_idle must not be negative");
  }
  return caf::none;
}

} // namespace ghscale
