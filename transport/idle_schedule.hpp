#pragma once
// A pool's idle minimum by time of day: five-field cron expressions
// (minute hour day-of-month month day-of-week, as Vixie cron reads them)
// evaluated against wall-clock time in an IANA timezone. Pure functions: the
// reaper turns its actor clock into Unix time (transport/wall_clock.hpp) and
// asks here.
#include "messages/config.hpp"

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include <bitset>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ghscale {

/// The instants a cron expression matches, as one set per field.
struct cron_schedule {
  std::bitset<60> minutes;
  std::bitset<24> hours;
  std::bitset<32> days_of_month; // 1..31
  std::bitset<13> months;        // 1..12
  std::bitset<7> days_of_week;   // 0 = Sunday
  /// Vixie cron: when both day fields are restricted (neither starts with
  /// `*`), a day matches if either matches; otherwise both must.
  bool day_of_month_star = false;
  bool day_of_week_star = false;
};

/// Parses "minute hour day-of-month month day-of-week": `*`, numbers,
/// ranges `a-b`, lists `a,b`, steps `*/n` and `a-b/n`, month names jan..dec
/// and weekday names sun..sat (case-insensitive), weekday 7 = Sunday.
/// Errors (errc::invalid_config) name the field and why.
caf::expected<cron_schedule> parse_cron(std::string_view text);

/// Whether the minute of `unix_time` (since the Unix epoch), read on the
/// wall clock of `timezone`, is in `schedule`; an unknown timezone is an
/// error.
caf::expected<bool> cron_matches(const cron_schedule& schedule,
                                 const std::string& timezone,
                                 caf::timespan unix_time);

/// The pool's idle minimum at `unix_time`: the first window of `schedule`
/// that matches, else `fallback`.
caf::expected<int32_t> idle_minimum(const std::vector<idle_window>& schedule,
                                    int32_t fallback, caf::timespan unix_time);

/// For config validation: every window parses and names a known timezone.
caf::error check_idle_schedule(const std::vector<idle_window>& schedule);

} // namespace ghscale
