#include "actors/sim_cloud.hpp"
#include "tests/actor_test.hpp"

#include <map>
#include <memory>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

/// What the simulated cloud told GitHub: (instance id, runner config).
using online_log = std::vector<std::pair<std::string, std::string>>;

/// A GitHub that only records which instances brought a runner online.
sim_github_actor::behavior_type recording_github(sim_github_actor::pointer,
                                                 std::shared_ptr<online_log> log) {
  return {
    [](atom::call, const github_request&) { return github_response{}; },
    [](atom::connect, const queue_actor&, const sim_cloud_actor&) {},
    [](atom::inject, const sim_job&) {},
    [](atom::inject, const sim_fault&) {},
    [log](atom::online, const std::string& id, const secret_string& config) {
      log->emplace_back(id, config.value);
    },
    [](atom::finished, int64_t) {},
    [](atom::stats) { return api_calls{}; },
    [](atom::flush, uint64_t) {},
  };
}

class SimCloudTest : public test::actor_test {
protected:
  SimCloudTest() {
    sim.boot_delay = 40s;
    sim.ec2_fleet_burst = 50;
    sim.ec2_fleet_refill = 5.0;
  }

  void start() {
    cloud = stop_at_teardown(sys.spawn(sim_cloud, sim, "/ghscale/runners/",
                                       sys.spawn(recording_github, online), stats));
  }

  fleet_request request(std::string token, int32_t count,
                        capacity_type capacity = capacity_type::on_demand) {
    fleet_request req;
    req.client_token = std::move(token);
    req.instance_types = {"m5.large", "c5.large"};
    req.subnets = {"subnet-a", "subnet-b", "subnet-c"};
    req.capacity = capacity;
    req.count = count;
    req.tags = {{"ghscale:pool", "linux"}};
    return req;
  }

  fleet_result fleet(const fleet_request& req) {
    return ask<fleet_result>(cloud, atom::fleet_v, req);
  }

  instance_list describe(instance_filter filter) {
    return ask<instance_list>(cloud, atom::describe_v, std::move(filter));
  }

  std::map<std::string, int64_t> cloud_stats() {
    auto res = ask<api_calls>(cloud, atom::stats_v);
    return {res.by_kind.begin(), res.by_kind.end()};
  }

  void put(const std::string& name, const std::string& value,
           std::vector<tag> tags = {}) {
    auto res = try_ask<std::string>(
      cloud, atom::put_param_v, parameter{name, secret_string{value}, std::move(tags)});
    ASSERT_TRUE(res);
    EXPECT_EQ(*res, name);
  }

  void inject(std::string kind, std::string type, double rate, caf::timespan d) {
    self->send(cloud, atom::inject_v, sim_fault{std::move(kind), std::move(type), rate, d});
    sched.run();
  }

  static bool is_throttled(const caf::error& err) {
    return err.category() == caf::atom("ghscale")
           && err.code() == static_cast<uint8_t>(errc::throttled);
  }

  simulation_config sim;
  metrics_ptr stats = std::make_shared<metrics>();
  std::shared_ptr<online_log> online = std::make_shared<online_log>();
  sim_cloud_actor cloud;
};

TEST_F(SimCloudTest, FillsRoundRobinOverTypesAndSubnets) {
  start();
  auto res = fleet(request("t-1", 4));
  EXPECT_TRUE(res.errors.empty());
  ASSERT_EQ(res.instances.size(), 4u);
  EXPECT_EQ(res.instances[0].instance_id, "i-0000000000000001");
  EXPECT_EQ(res.instances[3].instance_id, "i-0000000000000004");
  EXPECT_EQ(res.instances[0].instance_type, "m5.large");
  EXPECT_EQ(res.instances[1].instance_type, "c5.large");
  EXPECT_EQ(res.instances[2].instance_type, "m5.large");
  EXPECT_EQ(res.instances[0].subnet, "subnet-a");
  EXPECT_EQ(res.instances[2].subnet, "subnet-c");
  EXPECT_EQ(res.instances[3].subnet, "subnet-a");
  auto listed = describe({{{"ghscale:pool", "linux"}}, false});
  ASSERT_EQ(listed.instances.size(), 4u);
  EXPECT_EQ(listed.instances[0].state, instance_state::pending);
  EXPECT_EQ(listed.instances[0].launched_at, sys.clock().now().time_since_epoch());
  auto s = cloud_stats();
  EXPECT_EQ(s["CreateFleet"], 1);
  EXPECT_EQ(s["DescribeInstances"], 1);
  EXPECT_EQ(s["instances_launched"], 4);
  EXPECT_EQ(s["instances_running"], 4);
  EXPECT_EQ(s["peak_instances"], 4);
}

TEST_F(SimCloudTest, CreateTagsAddsOrReplacesAndRefusesUnknownIds) {
  start();
  auto res = fleet(request("t-1", 2));
  ASSERT_EQ(res.instances.size(), 2u);
  auto first = res.instances[0].instance_id;
  auto tagged = ask<batch_result>(cloud, atom::add_tags_v,
                                  instance_tags{{first}, {{"ghscale:orphan", "1"}}});
  EXPECT_EQ(tagged.succeeded, std::vector<std::string>{first});
  ask<batch_result>(cloud, atom::add_tags_v, instance_tags{{first}, {{"ghscale:orphan", "2"}}});
  auto orphans = describe({{{"ghscale:orphan", "2"}}, false});
  ASSERT_EQ(orphans.instances.size(), 1u);
  EXPECT_EQ(orphans.instances[0].instance_id, first);
  // One unknown id: nothing is tagged, as EC2 does.
  auto refused = ask<batch_result>(
    cloud, atom::add_tags_v,
    instance_tags{{res.instances[1].instance_id, "i-unknown"}, {{"ghscale:orphan", "3"}}});
  EXPECT_TRUE(refused.succeeded.empty());
  ASSERT_EQ(refused.failed.size(), 1u);
  EXPECT_EQ(refused.failed[0].code, "InvalidInstanceID.NotFound");
  EXPECT_TRUE(describe({{{"ghscale:orphan", "3"}}, false}).instances.empty());
  EXPECT_EQ(cloud_stats()["CreateTags"], 3);
}

TEST_F(SimCloudTest, RepeatedClientTokenReturnsTheSameFleet) {
  start();
  auto first = fleet(request("t-1", 2));
  auto again = fleet(request("t-1", 2));
  ASSERT_EQ(again.instances.size(), 2u);
  EXPECT_EQ(again.instances[0].instance_id, first.instances[0].instance_id);
  EXPECT_EQ(again.instances[1].instance_id, first.instances[1].instance_id);
  auto other = fleet(request("t-2", 1));
  ASSERT_EQ(other.instances.size(), 1u);
  EXPECT_EQ(other.instances[0].instance_id, "i-0000000000000003");
  auto s = cloud_stats();
  EXPECT_EQ(s["CreateFleet"], 3);
  EXPECT_EQ(s["instances_launched"], 3);
}

TEST_F(SimCloudTest, CreateFleetBucketThrottlesAndRefills) {
  sim.ec2_fleet_burst = 2;
  sim.ec2_fleet_refill = 0.5;
  start();
  fleet(request("t-1", 1));
  fleet(request("t-2", 1));
  auto third = try_ask<fleet_result>(cloud, atom::fleet_v, request("t-3", 1));
  ASSERT_FALSE(third);
  EXPECT_TRUE(is_throttled(third.error())) << sys.render(third.error());
  advance(1s); // half a token
  EXPECT_FALSE(try_ask<fleet_result>(cloud, atom::fleet_v, request("t-3", 1)));
  advance(1s);
  EXPECT_EQ(fleet(request("t-3", 1)).instances.size(), 1u);
  auto s = cloud_stats();
  EXPECT_EQ(s["CreateFleet"], 3);
  EXPECT_EQ(s["CreateFleet throttled"], 2);
  EXPECT_EQ(s["instances_launched"], 3);
}

TEST_F(SimCloudTest, CapacityFaultSkipsTheTypeAndReportsIt) {
  start();
  inject("ec2_capacity", "m5.large", 1.0, 60s);
  auto res = fleet(request("t-1", 3));
  ASSERT_EQ(res.instances.size(), 3u);
  for (auto& i : res.instances)
    EXPECT_EQ(i.instance_type, "c5.large");
  ASSERT_EQ(res.errors.size(), 1u);
  EXPECT_EQ(res.errors[0].code, "InsufficientInstanceCapacity");
  EXPECT_EQ(res.errors[0].instance_type, "m5.large");
  EXPECT_EQ(res.errors[0].capacity, capacity_type::on_demand);
  advance(60s);
  auto healed = fleet(request("t-2", 2));
  EXPECT_TRUE(healed.errors.empty());
  EXPECT_EQ(healed.instances[0].instance_type, "m5.large");
}

TEST_F(SimCloudTest, SpotCapacityFaultSparesOnDemand) {
  start();
  inject("ec2_spot_capacity", "", 1.0, 60s);
  auto spot = fleet(request("t-1", 2, capacity_type::spot));
  EXPECT_TRUE(spot.instances.empty());
  ASSERT_EQ(spot.errors.size(), 2u);
  EXPECT_EQ(spot.errors[0].code, "InsufficientInstanceCapacity");
  EXPECT_EQ(spot.errors[1].instance_type, "c5.large");
  EXPECT_EQ(spot.errors[1].capacity, capacity_type::spot);
  auto on_demand = fleet(request("t-2", 2, capacity_type::on_demand));
  EXPECT_EQ(on_demand.instances.size(), 2u);
  EXPECT_TRUE(on_demand.errors.empty());
}

TEST_F(SimCloudTest, PartialFaultFillsOnlyAFraction) {
  start();
  inject("ec2_partial", "", 0.5, 60s);
  auto res = fleet(request("t-1", 5));
  EXPECT_EQ(res.instances.size(), 2u);
  ASSERT_EQ(res.errors.size(), 1u);
  EXPECT_EQ(res.errors[0].code, "InsufficientInstanceCapacity");
  EXPECT_EQ(cloud_stats()["instances_launched"], 2);
}

TEST_F(SimCloudTest, ThrottleFaultRefusesFleetAndDescribe) {
  start();
  inject("ec2_throttle", "", 1.0, 30s);
  auto f = try_ask<fleet_result>(cloud, atom::fleet_v, request("t-1", 1));
  ASSERT_FALSE(f);
  EXPECT_TRUE(is_throttled(f.error()));
  auto d = try_ask<instance_list>(cloud, atom::describe_v, instance_filter{});
  ASSERT_FALSE(d);
  EXPECT_TRUE(is_throttled(d.error()));
  advance(30s);
  EXPECT_EQ(fleet(request("t-1", 1)).instances.size(), 1u);
  auto s = cloud_stats();
  EXPECT_EQ(s["CreateFleet throttled"], 1);
  EXPECT_EQ(s["DescribeInstances throttled"], 1);
  EXPECT_EQ(s["CreateFleet"], 1);
}

TEST_F(SimCloudTest, BootedInstanceReadsItsParameterAndGoesOnline) {
  start();
  auto res = fleet(request("t-1", 2));
  auto first = res.instances[0].instance_id;
  auto second = res.instances[1].instance_id;
  put("/ghscale/runners/" + first, "jit-first");
  advance(39s);
  EXPECT_TRUE(online->empty());
  advance(1s);
  EXPECT_EQ(*online, (online_log{{first, "jit-first"}}));
  auto listed = describe({});
  EXPECT_EQ(listed.instances[0].state, instance_state::running);
  EXPECT_EQ(listed.instances[1].state, instance_state::running);
  advance(5s);
  put("/ghscale/runners/" + second, "jit-second"); // late: found at the next check
  advance(4s);
  EXPECT_EQ(online->size(), 1u);
  advance(1s);
  EXPECT_EQ(*online, (online_log{{first, "jit-first"}, {second, "jit-second"}}));
  advance(10min);
  EXPECT_EQ(online->size(), 2u); // once per instance
  EXPECT_EQ(cloud_stats()["runners_started"], 2);
}

TEST_F(SimCloudTest, InstanceWithoutParameterBecomesAnOrphan) {
  start();
  auto id = fleet(request("t-1", 1)).instances[0].instance_id;
  advance(40s + 10min);
  auto s = cloud_stats();
  EXPECT_EQ(s["instances_without_config"], 1);
  put("/ghscale/runners/" + id, "too-late");
  advance(1h);
  EXPECT_TRUE(online->empty());
  auto listed = describe({});
  ASSERT_EQ(listed.instances.size(), 1u);
  EXPECT_EQ(listed.instances[0].state, instance_state::running);
}

TEST_F(SimCloudTest, DescribeFiltersByTagsAndTerminateReportsPerInstance) {
  start();
  auto linux_ids = fleet(request("t-1", 2)).instances;
  auto gpu = request("t-2", 1);
  gpu.tags = {{"ghscale:pool", "gpu"}, {"team", "ml"}};
  auto gpu_id = fleet(gpu).instances[0].instance_id;
  EXPECT_EQ(describe({{{"ghscale:pool", "linux"}}, false}).instances.size(), 2u);
  auto ml = describe({{{"ghscale:pool", "gpu"}, {"team", "ml"}}, false});
  ASSERT_EQ(ml.instances.size(), 1u);
  EXPECT_EQ(ml.instances[0].instance_id, gpu_id);
  EXPECT_TRUE(describe({{{"team", "web"}}, false}).instances.empty());
  auto res = try_ask<batch_result>(cloud, atom::terminate_v,
                                   instance_ids{{linux_ids[0].instance_id, "i-nope"}});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->succeeded, std::vector<std::string>{linux_ids[0].instance_id});
  ASSERT_EQ(res->failed.size(), 1u);
  EXPECT_EQ(res->failed[0].id, "i-nope");
  EXPECT_EQ(res->failed[0].code, "InvalidInstanceID.NotFound");
  EXPECT_EQ(describe({{{"ghscale:pool", "linux"}}, false}).instances.size(), 1u);
  auto all = describe({{{"ghscale:pool", "linux"}}, true});
  ASSERT_EQ(all.instances.size(), 2u);
  EXPECT_EQ(all.instances[0].state, instance_state::terminated);
  self->send(cloud, atom::finished_v, gpu_id);
  sched.run();
  auto s = cloud_stats();
  EXPECT_EQ(s["instances_running"], 1);
  EXPECT_EQ(s["peak_instances"], 3);
  EXPECT_EQ(s["TerminateInstances"], 1);
}

TEST_F(SimCloudTest, ParametersAndDuplicateJobLaunches) {
  start();
  put("/ghscale/runners/i-1", "a", {{"ghscale:job", "7#1"}});
  put("/ghscale/runners/i-1", "a2", {{"ghscale:job", "7#1"}}); // overwrite
  put("/ghscale/runners/i-2", "b", {{"ghscale:job", "7#1"}});  // a second runner
  put("/ghscale/runners/i-3", "c", {{"ghscale:job", "7#2"}});
  put("/ghscale/runners/i-4", "idle");
  auto gone = try_ask<std::string>(cloud, atom::del_param_v,
                                   std::string{"/ghscale/runners/i-1"});
  ASSERT_TRUE(gone);
  EXPECT_EQ(*gone, "/ghscale/runners/i-1");
  auto missing = try_ask<std::string>(cloud, atom::del_param_v,
                                      std::string{"/ghscale/runners/i-1"});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code(), static_cast<uint8_t>(errc::not_found));
  auto s = cloud_stats();
  EXPECT_EQ(s["PutParameter"], 5);
  EXPECT_EQ(s["DeleteParameter"], 2);
  EXPECT_EQ(s["job_tag_repeats"], 1);
}

TEST_F(SimCloudTest, LatencyDelaysAnswersButNotTheirEffects) {
  sim.ec2_latency = 2s;
  sim.ec2_fleet_burst = 1;
  sim.ec2_fleet_refill = 0.01;
  start();
  auto launched
    = spawn_requester<fleet_result>(cloud, 1h, atom::fleet_v, request("t-1", 1));
  auto throttled
    = spawn_requester<fleet_result>(cloud, 1h, atom::fleet_v, request("t-2", 1));
  sched.run();
  EXPECT_FALSE(launched->has_value());
  EXPECT_FALSE(throttled->has_value());
  auto s = cloud_stats(); // served on arrival
  EXPECT_EQ(s["CreateFleet"], 1);
  EXPECT_EQ(s["CreateFleet throttled"], 1);
  EXPECT_EQ(s["instances_launched"], 1);
  advance(1s);
  EXPECT_FALSE(launched->has_value());
  EXPECT_FALSE(throttled->has_value());
  advance(1s);
  ASSERT_TRUE(launched->has_value());
  ASSERT_TRUE(**launched) << sys.render((*launched)->error());
  ASSERT_EQ((*launched)->value().instances.size(), 1u);
  EXPECT_EQ((*launched)->value().instances[0].instance_id, "i-0000000000000001");
  ASSERT_TRUE(throttled->has_value());
  ASSERT_FALSE(**throttled);
  EXPECT_TRUE(is_throttled((*throttled)->error())) << sys.render((*throttled)->error());
}

} // namespace
