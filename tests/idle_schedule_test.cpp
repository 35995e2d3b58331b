// Cron parsing and matching for idle schedules, at fixed instants around
// daylight-saving changes (no clock is read).
#include "transport/idle_schedule.hpp"

#include "messages/types.hpp"

#include <date/date.h>
#include <gtest/gtest.h>

#include <chrono>
#include <string>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

/// A UTC instant as time since the Unix epoch.
caf::timespan utc(int year, unsigned month, unsigned day, int hour, int minute) {
  auto days = date::sys_days{date::year{year} / date::month{month} / date::day{day}};
  return std::chrono::duration_cast<caf::timespan>(
    days.time_since_epoch() + std::chrono::hours{hour} + std::chrono::minutes{minute});
}

cron_schedule cron(const std::string& text) {
  auto parsed = parse_cron(text);
  EXPECT_TRUE(parsed) << text << ": " << describe(parsed.error());
  return parsed ? *parsed : cron_schedule{};
}

bool matches(const std::string& text, const std::string& zone, caf::timespan at) {
  auto result = cron_matches(cron(text), zone, at);
  EXPECT_TRUE(result) << describe(result.error());
  return result && *result;
}

std::string parse_error(const std::string& text) {
  auto parsed = parse_cron(text);
  EXPECT_FALSE(parsed) << text << " parsed";
  if (parsed)
    return "";
  EXPECT_EQ(parsed.error(), errc::invalid_config);
  return describe(parsed.error());
}

} // namespace

TEST(ParseCron, StarsListsRangesAndSteps) {
  auto s = cron("*/15 9-17/4 1,15 * *");
  EXPECT_EQ(s.minutes.count(), 4u);
  EXPECT_TRUE(s.minutes.test(0) && s.minutes.test(15) && s.minutes.test(30)
              && s.minutes.test(45));
  EXPECT_EQ(s.hours.count(), 3u); // 9, 13, 17
  EXPECT_TRUE(s.hours.test(9) && s.hours.test(13) && s.hours.test(17));
  EXPECT_EQ(s.days_of_month.count(), 2u);
  EXPECT_TRUE(s.days_of_month.test(1) && s.days_of_month.test(15));
  EXPECT_EQ(s.months.count(), 12u);
  EXPECT_FALSE(s.months.test(0));
  EXPECT_EQ(s.days_of_week.count(), 7u);
  EXPECT_FALSE(s.day_of_month_star);
  EXPECT_TRUE(s.day_of_week_star);
}

TEST(ParseCron, NamesAreCaseInsensitiveAndSevenIsSunday) {
  auto s = cron("0 0 * JAN-mar,Dec Mon-FRI");
  EXPECT_EQ(s.months.count(), 4u);
  EXPECT_TRUE(s.months.test(1) && s.months.test(2) && s.months.test(3)
              && s.months.test(12));
  EXPECT_EQ(s.days_of_week.count(), 5u);
  EXPECT_FALSE(s.days_of_week.test(0));
  EXPECT_FALSE(s.days_of_week.test(6));
  auto sunday = cron("0 0 * * 7");
  EXPECT_EQ(sunday.days_of_week.count(), 1u);
  EXPECT_TRUE(sunday.days_of_week.test(0));
  auto weekend = cron("0 0 * * sat,sun");
  EXPECT_TRUE(weekend.days_of_week.test(6) && weekend.days_of_week.test(0));
  EXPECT_EQ(cron("0 0 * * 5-7").days_of_week.count(), 3u); // fri, sat, sun
}

TEST(ParseCron, ErrorsNameTheFieldAndWhy) {
  EXPECT_NE(parse_error("0 25 * * *").find("hour field '25': 25 is outside 0-23"),
            std::string::npos);
  EXPECT_NE(parse_error("0 0 0 * *").find("day-of-month field '0'"),
            std::string::npos);
  EXPECT_NE(parse_error("0 0 * 13 *").find("month field '13'"), std::string::npos);
  EXPECT_NE(parse_error("0 0 * * 8").find("day-of-week field '8'"),
            std::string::npos);
  EXPECT_NE(parse_error("0 0 * * funday").find("'funday' is not a number or a name"),
            std::string::npos);
  EXPECT_NE(parse_error("mon 0 * * *").find("minute field 'mon': 'mon' is not a number"),
            std::string::npos);
  EXPECT_NE(parse_error("*/0 * * * *").find("step '0' is not a positive number"),
            std::string::npos);
  EXPECT_NE(parse_error("5/10 * * * *").find("a step needs '*' or a range"),
            std::string::npos);
  EXPECT_NE(parse_error("0 17-9 * * *").find("range '17-9' runs backwards"),
            std::string::npos);
  EXPECT_NE(parse_error("0,,5 * * * *").find("empty list item"), std::string::npos);
  EXPECT_NE(parse_error("0 * * *").find("expected 5 fields"), std::string::npos);
  EXPECT_NE(parse_error("0 * * * * *").find("got 6"), std::string::npos);
  EXPECT_NE(parse_error("").find("got 0"), std::string::npos);
}

TEST(CronMatches, WeekdaysAndStepsInUtc) {
  // 2026-11-23 is a Monday.
  EXPECT_TRUE(matches("30 9 * * mon-fri", "UTC", utc(2026, 11, 23, 9, 30)));
  EXPECT_FALSE(matches("30 9 * * mon-fri", "UTC", utc(2026, 11, 22, 9, 30)));
  EXPECT_FALSE(matches("30 9 * * mon-fri", "UTC", utc(2026, 11, 23, 9, 31)));
  EXPECT_TRUE(matches("*/20 * * * *", "UTC", utc(2026, 11, 23, 4, 40)));
  EXPECT_FALSE(matches("*/20 * * * *", "UTC", utc(2026, 11, 23, 4, 41)));
  // Seconds within the minute do not matter.
  EXPECT_TRUE(matches("30 9 * * *", "UTC", utc(2026, 11, 23, 9, 30) + 59s));
  EXPECT_FALSE(matches("30 9 * * *", "UTC", utc(2026, 11, 23, 9, 30) + 60s));
}

TEST(CronMatches, BothDayFieldsRestrictedMeansEither) {
  // The 1st of the month, or any Friday (Vixie cron).
  const std::string either = "0 12 1 * fri";
  EXPECT_TRUE(matches(either, "UTC", utc(2026, 12, 1, 12, 0)));   // a Tuesday
  EXPECT_TRUE(matches(either, "UTC", utc(2026, 11, 27, 12, 0)));  // a Friday
  EXPECT_FALSE(matches(either, "UTC", utc(2026, 11, 26, 12, 0))); // neither
  // A starred day field (even with a step) makes the other one decide alone.
  // "*/2" is days 1, 3, 5, ...: odd-numbered Fridays only.
  EXPECT_TRUE(matches("0 12 */2 * fri", "UTC", utc(2026, 11, 27, 12, 0)));
  EXPECT_FALSE(matches("0 12 */2 * fri", "UTC", utc(2026, 11, 20, 12, 0)));
  EXPECT_FALSE(matches("0 12 */2 * fri", "UTC", utc(2026, 11, 25, 12, 0)));
  EXPECT_TRUE(matches("0 12 1 * *", "UTC", utc(2026, 12, 1, 12, 0)));
  EXPECT_FALSE(matches("0 12 1 * *", "UTC", utc(2026, 11, 27, 12, 0)));
}

TEST(CronMatches, AmsterdamAcrossDaylightSaving) {
  const std::string zone = "Europe/Amsterdam";
  // Winter: 08:00 UTC is 09:00 CET.
  EXPECT_TRUE(matches("0 9 * * *", zone, utc(2026, 1, 15, 8, 0)));
  // Summer: 07:00 UTC is 09:00 CEST.
  EXPECT_TRUE(matches("0 9 * * *", zone, utc(2026, 7, 15, 7, 0)));
  EXPECT_FALSE(matches("0 9 * * *", zone, utc(2026, 7, 15, 8, 0)));
  // 2026-03-29: 02:00 CET jumps to 03:00 CEST at 01:00 UTC; 02:30 never
  // happens that day.
  EXPECT_TRUE(matches("59 1 * * *", zone, utc(2026, 3, 29, 0, 59)));
  EXPECT_TRUE(matches("0 3 * * *", zone, utc(2026, 3, 29, 1, 0)));
  for (int minute = 0; minute < 24 * 60; ++minute)
    EXPECT_FALSE(matches("30 2 29 3 *", zone,
                         utc(2026, 3, 28, 12, 0) + std::chrono::minutes{minute}));
  // 2026-10-25: 02:30 happens twice (00:30 UTC in CEST, 01:30 UTC in CET).
  EXPECT_TRUE(matches("30 2 * * *", zone, utc(2026, 10, 25, 0, 30)));
  EXPECT_TRUE(matches("30 2 * * *", zone, utc(2026, 10, 25, 1, 30)));
}

TEST(CronMatches, NewYorkAcrossDaylightSavingAndDate) {
  const std::string zone = "America/New_York";
  // 2026-03-08: 02:00 EST jumps to 03:00 EDT at 07:00 UTC.
  EXPECT_TRUE(matches("30 1 * * *", zone, utc(2026, 3, 8, 6, 30)));
  EXPECT_TRUE(matches("0 3 * * *", zone, utc(2026, 3, 8, 7, 0)));
  // 2026-11-01: 01:30 happens at 05:30 UTC (EDT) and 06:30 UTC (EST).
  EXPECT_TRUE(matches("30 1 * * sun", zone, utc(2026, 11, 1, 5, 30)));
  EXPECT_TRUE(matches("30 1 * * sun", zone, utc(2026, 11, 1, 6, 30)));
  // Late Saturday evening in New York is already Sunday in UTC.
  EXPECT_TRUE(matches("0 20 * * sat", zone, utc(2026, 11, 22, 1, 0)));
  EXPECT_FALSE(matches("0 20 * * sun", zone, utc(2026, 11, 22, 1, 0)));
  EXPECT_TRUE(matches("0 20 21 nov *", zone, utc(2026, 11, 22, 1, 0)));
}

TEST(CronMatches, UnknownTimezoneIsAnError) {
  auto result = cron_matches(cron("* * * * *"), "Mars/Olympus_Mons", 0s);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error(), errc::invalid_config);
  EXPECT_NE(describe(result.error()).find("Mars/Olympus_Mons"), std::string::npos);
}

TEST(IdleMinimum, FirstMatchingWindowElseFallback) {
  std::vector<idle_window> schedule{
    {"* 9-17 * * mon-fri", "Europe/Amsterdam", 5},
    {"* * * * *", "UTC", 2},
  };
  // Monday 10:00 in Amsterdam (09:00 UTC): the first window.
  EXPECT_EQ(idle_minimum(schedule, 0, utc(2026, 11, 23, 9, 0)), 5);
  // Monday 18:00 in Amsterdam: the catch-all second window.
  EXPECT_EQ(idle_minimum(schedule, 0, utc(2026, 11, 23, 17, 0)), 2);
  schedule.pop_back();
  EXPECT_EQ(idle_minimum(schedule, 1, utc(2026, 11, 23, 17, 0)), 1);
  EXPECT_EQ(idle_minimum({}, 3, utc(2026, 11, 23, 9, 0)), 3);
}

TEST(IdleMinimum, BadWindowsAreErrorsNamingTheWindow) {
  std::vector<idle_window> schedule{{"* * * * *", "UTC", 1},
                                    {"* * * * *", "Nowhere/Town", 2}};
  // The first window matches before the bad one is looked at.
  EXPECT_EQ(idle_minimum(schedule, 0, utc(2026, 11, 23, 9, 0)), 1);
  schedule[0].cron = "0 0 1 1 *";
  auto result = idle_minimum(schedule, 0, utc(2026, 11, 23, 9, 0));
  ASSERT_FALSE(result);
  EXPECT_NE(describe(result.error()).find("idle_schedule[1]: unknown timezone "
                                          "'Nowhere/Town'"),
            std::string::npos);
}

TEST(CheckIdleSchedule, ValidatesEveryWindow) {
  EXPECT_FALSE(check_idle_schedule({}));
  EXPECT_FALSE(check_idle_schedule({{"0 9 * * mon-fri", "America/New_York", 4},
                                    {"* * * * *", "UTC", 0}}));
  auto bad_cron = check_idle_schedule({{"0 9 * * *", "UTC", 1}, {"0 9 * *", "UTC", 1}});
  EXPECT_EQ(bad_cron, errc::invalid_config);
  EXPECT_NE(describe(bad_cron).find("idle_schedule[1]: cron '0 9 * *'"),
            std::string::npos);
  auto bad_zone = check_idle_schedule({{"0 9 * * *", "Europe/Atlantis", 1}});
  EXPECT_NE(describe(bad_zone).find("idle_schedule[0]: unknown timezone"),
            std::string::npos);
  auto negative = check_idle_schedule({{"0 9 * * *", "UTC", -1}});
  EXPECT_NE(describe(negative).find("min_idle must not be negative"),
            std::string::npos);
}
