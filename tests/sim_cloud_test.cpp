#include "actors/embedded/sim_cloud.hpp"
#include "tests/actor_test.hpp"
#include "transport/ec2_event.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <set>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

/// What the simulated cloud told GitHub: (instance id, runner config).
using online_log = std::vector<std::pair<std::string, std::string>>;

/// A GitHub that only records which instances brought a runner online and
/// which instances it was told are gone.
sim_github_actor::behavior_type recording_github(sim_github_actor::pointer,
                                                 std::shared_ptr<online_log> log,
                                                 std::shared_ptr<online_log> gone) {
  return {
    [](atom::call, const github_request&) { return github_response{}; },
    [](atom::connect, const queue_actor&, const sim_cloud_actor&) {},
    [](atom::inject, const sim_job&) {},
    [](atom::inject, const sim_fault&) {},
    [log](atom::online, const std::string& id, const secret_string& config) {
      log->emplace_back(id, config.value);
    },
    [](atom::finished, int64_t) {},
    [gone](atom::terminate, const std::string& id, const secret_string& config) {
      gone->emplace_back(id, config.value);
    },
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
                                       sys.spawn(recording_github, online, gone_log), stats));
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
  std::shared_ptr<online_log> gone_log = std::make_shared<online_log>();
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

// -- instances going away ------------------------------------------------------

TEST_F(SimCloudTest, EveryTerminationIsReportedToGithubWithItsConfig) {
  start();
  auto ids = fleet(request("t-1", 3)).instances;
  put("/ghscale/runners/" + ids[0].instance_id, "jit-0");
  put("/ghscale/runners/" + ids[1].instance_id, "jit-1");
  ask<batch_result>(cloud, atom::terminate_v, instance_ids{{ids[0].instance_id}});
  ask<batch_result>(cloud, atom::terminate_v, instance_ids{{ids[2].instance_id}});
  self->send(cloud, atom::finished_v, ids[1].instance_id);
  sched.run();
  EXPECT_EQ(*gone_log, (online_log{{ids[0].instance_id, "jit-0"},
                                   {ids[2].instance_id, ""},
                                   {ids[1].instance_id, "jit-1"}}));
  // Terminating again changes nothing; a config written for a gone instance
  // is reported, since its registration will never come online.
  ask<batch_result>(cloud, atom::terminate_v, instance_ids{{ids[0].instance_id}});
  put("/ghscale/runners/" + ids[2].instance_id, "jit-late");
  ASSERT_EQ(gone_log->size(), 4u);
  EXPECT_EQ(gone_log->back(), (std::pair<std::string, std::string>{
                                ids[2].instance_id, "jit-late"}));
  auto s = cloud_stats();
  EXPECT_EQ(s["instances_running"], 0);
  EXPECT_EQ(s.count("alive_ms " + ids[0].instance_id), 0u);
}

/// A queue that only records the bodies sent to it.
queue_actor::behavior_type recording_queue(queue_actor::pointer,
                                           std::shared_ptr<std::vector<std::string>> bodies) {
  return {
    [](atom::receive, const receive_request&) { return received_batch{}; },
    [](atom::remove, const std::vector<std::string>&) { return batch_result{}; },
    [](atom::visibility, const std::vector<visibility_change>&) {
      return batch_result{};
    },
    [bodies](atom::enqueue, const std::vector<outgoing_message>& msgs) {
      batch_result res;
      for (auto& m : msgs) {
        res.succeeded.push_back(std::to_string(bodies->size()));
        bodies->push_back(m.body);
      }
      return res;
    },
    [](atom::depth) { return queue_depth{}; },
  };
}

class SimCloudSpotTest : public SimCloudTest {
protected:
  void start_connected() {
    start();
    self->send(cloud, atom::connect_v, sys.spawn(recording_queue, bodies));
    sched.run();
  }

  /// The instances the warnings sent since the last call name, sorted.
  std::vector<std::string> warned() {
    std::vector<std::string> ids;
    for (auto& body : *bodies) {
      auto id = parse_spot_interruption(body);
      EXPECT_TRUE(id && id->has_value()) << body;
      if (id && id->has_value())
        ids.push_back(**id);
    }
    bodies->clear();
    std::sort(ids.begin(), ids.end());
    return ids;
  }

  std::set<std::string> live_ids() {
    std::set<std::string> out;
    for (auto& inst : describe({}).instances)
      out.insert(inst.instance_id);
    return out;
  }

  std::shared_ptr<std::vector<std::string>> bodies
    = std::make_shared<std::vector<std::string>>();
};

TEST_F(SimCloudSpotTest, InterruptionWarnsAFractionOfSpotThenReclaimsThem) {
  start_connected();
  auto spot = fleet(request("t-spot", 10, capacity_type::spot)).instances;
  auto on_demand = fleet(request("t-od", 2)).instances;
  for (auto& i : spot)
    put("/ghscale/runners/" + i.instance_id, "jit-" + i.instance_id);
  inject("spot_interruption", "", 0.2, 0s);
  auto first = warned();
  ASSERT_EQ(first.size(), 2u);
  std::set<std::string> spot_ids;
  for (auto& i : spot)
    spot_ids.insert(i.instance_id);
  for (auto& id : first)
    EXPECT_EQ(spot_ids.count(id), 1u) << id << " is not a spot instance";
  // Two minutes of warning, then EC2 takes them back.
  advance(119s);
  EXPECT_EQ(live_ids().size(), 12u);
  EXPECT_TRUE(gone_log->empty());
  advance(1s);
  auto live = live_ids();
  EXPECT_EQ(live.size(), 10u);
  for (auto& id : first)
    EXPECT_EQ(live.count(id), 0u);
  ASSERT_EQ(gone_log->size(), 2u);
  for (auto& [id, config] : *gone_log)
    EXPECT_EQ(config, "jit-" + id);
  // An instance is warned once: all of the 8 spot instances left, only the
  // c5.large ones (every second one) when the type is named.
  inject("spot_interruption", "c5.large", 1.0, 0s);
  auto second = warned();
  std::map<std::string, std::string> type_of;
  for (auto& i : spot)
    type_of[i.instance_id] = i.instance_type;
  EXPECT_FALSE(second.empty());
  for (auto& id : second)
    EXPECT_EQ(type_of[id], "c5.large") << id;
  inject("spot_interruption", "", 1.0, 0s);
  auto third = warned();
  EXPECT_EQ(second.size() + third.size(), 8u);
  advance(2min);
  EXPECT_EQ(live_ids().size(), 2u); // the on-demand ones
  for (auto& i : on_demand)
    EXPECT_EQ(live_ids().count(i.instance_id), 1u);
  auto s = cloud_stats();
  EXPECT_EQ(s["spot_interrupted"], 10);
  EXPECT_EQ(s["spot_reclaimed"], 10);
  EXPECT_EQ(s["events_delivered"], 10);
}

TEST_F(SimCloudSpotTest, InterruptionChoiceFollowsTheSeed) {
  auto run = [this](uint64_t seed) {
    sim.seed = seed;
    start_connected();
    fleet(request("t-" + std::to_string(seed), 20, capacity_type::spot));
    inject("spot_interruption", "", 0.25, 0s);
    auto ids = warned();
    stop_all();
    sched.run();
    return ids;
  };
  auto a = run(1);
  auto b = run(1);
  EXPECT_EQ(a.size(), 5u);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, run(2));
}

TEST_F(SimCloudSpotTest, WithoutAQueueTheWarningIsLostButTheInstanceStillGoes) {
  start();
  auto id = fleet(request("t-1", 1, capacity_type::spot)).instances[0].instance_id;
  inject("spot_interruption", "", 1.0, 0s);
  advance(2min);
  EXPECT_TRUE(describe({}).instances.empty());
  auto s = cloud_stats();
  EXPECT_EQ(s["events_undelivered"], 1);
  EXPECT_EQ(s["spot_reclaimed"], 1);
  ASSERT_EQ(gone_log->size(), 1u);
  EXPECT_EQ(gone_log->front().first, id);
}
