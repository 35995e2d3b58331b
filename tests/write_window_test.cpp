// The write window an installation client keeps for GitHub's secondary
// limit, and its forecast of when further writes could start.
#include "actors/write_window.hpp"

#include <gtest/gtest.h>

#include <chrono>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

caf::timespan s(int64_t seconds) {
  return std::chrono::seconds(seconds);
}

} // namespace

TEST(WriteWindow, OpensAgainWhenTheOldestStartLeaves) {
  write_window w{2, 61s};
  w.record(s(0));
  w.record(s(10));
  w.forget(s(60));
  EXPECT_FALSE(w.open());
  EXPECT_EQ(w.reopens_at(), s(61));
  w.forget(s(61));
  EXPECT_TRUE(w.open());
  EXPECT_EQ(w.used(), 1);
}

TEST(WriteWindowForecast, StartsAtOnceWhileTheWindowHasRoom) {
  write_window w{30, 61s};
  auto starts = w.next_starts(30, s(5));
  ASSERT_EQ(starts.size(), 30u);
  EXPECT_EQ(starts.front(), s(5));
  EXPECT_EQ(starts.back(), s(5));
}

TEST(WriteWindowForecast, WaitsForEachOldStartToLeave) {
  // 30 a minute, 30 used at 0, 10 and 20 s: the next starts come as those
  // leave the 61 s window, ten at 61, ten at 71, ten at 81.
  write_window w{30, 61s};
  for (auto at : {0, 10, 20})
    for (int i = 0; i < 10; ++i)
      w.record(s(at));
  w.forget(s(30));
  auto starts = w.next_starts(31, s(30));
  ASSERT_EQ(starts.size(), 31u);
  EXPECT_EQ(starts[0], s(61));
  EXPECT_EQ(starts[9], s(61));
  EXPECT_EQ(starts[10], s(71));
  EXPECT_EQ(starts[29], s(81));
  // The 31st waits for the first forecast start to leave in turn.
  EXPECT_EQ(starts[30], s(122));
}

TEST(WriteWindowForecast, NeverEarlierThanAsked) {
  write_window w{2, 61s};
  w.record(s(0));
  auto starts = w.next_starts(2, s(100));
  ASSERT_EQ(starts.size(), 2u);
  EXPECT_EQ(starts[0], s(100));
  EXPECT_EQ(starts[1], s(100));
  EXPECT_TRUE(w.next_starts(0, s(0)).empty());
}

TEST(WriteWindowForecast, LeavesTheWindowItselfAlone) {
  write_window w{1, 61s};
  w.record(s(0));
  auto starts = w.next_starts(3, s(1));
  EXPECT_EQ(starts, (std::vector<caf::timespan>{s(61), s(122), s(183)}));
  EXPECT_EQ(w.used(), 1);
}
