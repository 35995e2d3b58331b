#include "actors/routing.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

using namespace ghscale;

namespace {

pool_config make_pool(std::string name, std::vector<std::string> labels,
                      label_match match, int32_t priority = 0,
                      std::string queue = "jobs") {
  pool_config pool;
  pool.name = std::move(name);
  pool.queue = std::move(queue);
  pool.labels = std::move(labels);
  pool.match = match;
  pool.priority = priority;
  return pool;
}

/// The name of the pool `route` picks, or "" for none.
std::string routed(const std::vector<pool_config>& pools,
                   const std::vector<std::string>& job_labels,
                   const std::string& queue = "jobs") {
  auto pool = route(pools, queue, job_labels);
  return pool == nullptr ? "" : pool->name;
}

} // namespace

// -- labels_match --------------------------------------------------------------

TEST(Routing, ExactNeedsEqualLabelSets) {
  auto pool = make_pool("linux", {"self-hosted", "linux", "x64"},
                        label_match::exact);
  EXPECT_TRUE(labels_match(pool, {"self-hosted", "linux", "x64"}));
  EXPECT_TRUE(labels_match(pool, {"x64", "linux", "self-hosted"}));
  EXPECT_FALSE(labels_match(pool, {"self-hosted", "linux"}));
  EXPECT_FALSE(labels_match(pool, {"self-hosted", "linux", "x64", "gpu"}));
}

TEST(Routing, SubsetNeedsEveryJobLabelInThePool) {
  auto pool = make_pool("linux", {"self-hosted", "linux", "x64"},
                        label_match::subset);
  EXPECT_TRUE(labels_match(pool, {"self-hosted", "linux", "x64"}));
  EXPECT_TRUE(labels_match(pool, {"self-hosted", "linux"}));
  EXPECT_TRUE(labels_match(pool, {"linux"}));
  EXPECT_FALSE(labels_match(pool, {"self-hosted", "gpu"}));
}

TEST(Routing, LabelsCompareCaseInsensitivelyAndIgnoreRepeats) {
  auto exact = make_pool("a", {"self-hosted", "Linux", "ARM64"},
                         label_match::exact);
  auto subset = make_pool("b", {"Self-Hosted", "LINUX"}, label_match::subset);
  EXPECT_TRUE(labels_match(exact, {"SELF-HOSTED", "linux", "arm64"}));
  EXPECT_TRUE(labels_match(exact, {"self-hosted", "linux", "Linux", "arm64"}));
  EXPECT_TRUE(labels_match(subset, {"linux", "self-hosted", "LiNuX"}));
}

TEST(Routing, EmptyJobLabelsMatchNothing) {
  EXPECT_FALSE(labels_match(make_pool("a", {}, label_match::exact), {}));
  EXPECT_FALSE(labels_match(make_pool("b", {}, label_match::subset), {}));
  EXPECT_FALSE(labels_match(make_pool("c", {"linux"}, label_match::subset), {}));
}

// -- route ---------------------------------------------------------------------

TEST(Routing, HighestPriorityWins) {
  std::vector<pool_config> pools{
    make_pool("generic", {"self-hosted", "linux", "gpu"}, label_match::subset, 1),
    make_pool("gpu", {"self-hosted", "linux", "gpu"}, label_match::exact, 5),
    make_pool("low", {"self-hosted", "linux", "gpu"}, label_match::subset, 0),
  };
  EXPECT_EQ(routed(pools, {"self-hosted", "linux", "gpu"}), "gpu");
  EXPECT_EQ(routed(pools, {"self-hosted", "linux"}), "generic");
}

TEST(Routing, TiesGoToTheFirstConfiguredPool) {
  std::vector<pool_config> pools{
    make_pool("first", {"self-hosted", "linux"}, label_match::subset, 3),
    make_pool("second", {"self-hosted", "linux"}, label_match::subset, 3),
  };
  EXPECT_EQ(routed(pools, {"linux"}), "first");
  std::swap(pools[0], pools[1]);
  EXPECT_EQ(routed(pools, {"linux"}), "second");
}

TEST(Routing, OnlyPoolsOfTheQueueTakeItsJobs) {
  std::vector<pool_config> pools{
    make_pool("other-queue", {"linux"}, label_match::subset, 9, "other"),
    make_pool("this-queue", {"linux"}, label_match::subset, 1, "jobs"),
  };
  EXPECT_EQ(routed(pools, {"linux"}, "jobs"), "this-queue");
  EXPECT_EQ(routed(pools, {"linux"}, "other"), "other-queue");
  EXPECT_EQ(routed(pools, {"linux"}, "unknown"), "");
}

TEST(Routing, NoMatchingPoolGivesNull) {
  std::vector<pool_config> pools{
    make_pool("linux", {"self-hosted", "linux"}, label_match::exact),
    make_pool("windows", {"self-hosted", "windows"}, label_match::subset),
  };
  EXPECT_EQ(route(pools, "jobs", {"self-hosted", "macos"}), nullptr);
  EXPECT_EQ(route(pools, "jobs", {}), nullptr);
  EXPECT_EQ(route({}, "jobs", {"linux"}), nullptr);
}

TEST(Routing, ReturnsThePoolItself) {
  std::vector<pool_config> pools{
    make_pool("a", {"x"}, label_match::exact),
    make_pool("b", {"y"}, label_match::exact),
  };
  EXPECT_EQ(route(pools, "jobs", {"Y"}), &pools[1]);
}
