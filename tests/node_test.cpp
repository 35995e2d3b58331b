// The whole tree on the in-process backends, in virtual time: jobs flow from
// the simulated GitHub through the queue to launched runners; drain stops
// pollers and leaves unfinished work on the queue; exceeding the restart
// intensity at the root ends the node with an error.
#include "actors/embedded/embedded_backends.hpp"
#include "actors/node.hpp"
#include "messages/actors.hpp"
#include "tests/actor_test.hpp"
#include "transport/config_file.hpp"
#include "transport/workflow_job.hpp"

#include <map>
#include <set>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

const char* node_config = R"(
[[queues]]
name = "jobs"
dead_letter = "jobs-dlq"
wait_time = "20s"
min_loops = 2
max_loops = 2

[[queues]]
name = "jobs-dlq"

[[github_apps]]
name = "app"
app_id = 7

[[pools]]
name = "linux"
queue = "jobs"
github_app = "app"
labels = ["self-hosted", "linux"]
match = "subset"
max_runners = 5
instance_types = ["m5.large"]
subnets = ["subnet-a"]
launch_template = "lt-test"
capacity = "on-demand"

[scaler]
window = "100ms"

[supervision]
max_restarts = 2
within = "60s"
initial_backoff = "100ms"
max_backoff = "1s"

[simulation]
boot_delay = "10s"

[logging]
level = "off"
)";

class NodeTest : public test::actor_test {
protected:
  void SetUp() override {
    auto parsed = parse_config(node_config, "node_test.toml");
    ASSERT_TRUE(parsed) << describe(parsed.error());
    conf = *parsed;
    auto w = spawn_embedded_backends(sys, conf, stats);
    ASSERT_TRUE(w) << describe(w.error());
    world = *w;
    for (auto& [name, q] : world.wiring.queues)
      stop_at_teardown(q);
    stop_at_teardown(world.github);
    stop_at_teardown(world.cloud);
  }

  /// Stopping the node takes a drain: give it time.
  ~NodeTest() override {
    stop_all();
    advance(30s);
  }

  void start_node() {
    auto h = spawn_node(sys, conf, world.wiring, stats, conf.simulation.seed);
    ASSERT_TRUE(h) << describe(h.error());
    handles = *h;
    stop_at_teardown(handles->node);
    sched.run();
  }

  std::map<std::string, int64_t> calls(const caf::expected<api_calls>& x) {
    std::map<std::string, int64_t> out;
    if (x)
      for (auto& [k, n] : x->by_kind)
        out[k] += n;
    return out;
  }

  void inject_job(int64_t id, caf::timespan run_for = 60s) {
    sim_job job;
    job.event.key = {id, 1};
    job.event.run_id = id;
    job.event.repository = {"acme", "svc", owner_type::organization};
    job.event.installation_id = 11;
    job.event.labels = {"self-hosted", "linux"};
    job.body = to_webhook_payload(job.event);
    job.run_for = run_for;
    caf::anon_send(world.github, atom::inject_v, job);
  }

  /// The jobs whose `queued` messages are visible on "jobs" (taken off it).
  std::set<int64_t> queued_jobs() {
    std::set<int64_t> out;
    for (;;) {
      auto batch = ask<received_batch>(world.wiring.queues.at("jobs"), atom::receive_v,
                                       receive_request{10, 0s, 12h});
      if (batch.messages.empty())
        return out;
      for (auto& msg : batch.messages)
        if (auto ev = parse_job_event(msg.body); ev && ev->action == job_action::queued)
          out.insert(ev->key.job_id);
    }
  }

  queue_depth depth(const std::string& queue) {
    return ask<queue_depth>(world.wiring.queues.at(queue), atom::depth_v);
  }

  metrics_ptr stats = std::make_shared<metrics>();
  config conf;
  embedded_world world;
  std::optional<node_handles> handles;
};

} // namespace

TEST_F(NodeTest, QueuedJobsGetOneRunnerEachAndTheQueueDrains) {
  start_node();
  for (int64_t id = 1; id <= 3; ++id)
    inject_job(id);
  advance(5min);
  auto cloud = calls(try_ask<api_calls>(world.cloud, atom::stats_v));
  auto github = calls(try_ask<api_calls>(world.github, atom::stats_v));
  EXPECT_EQ(cloud["instances_launched"], 3);
  EXPECT_EQ(github["runners_idle_never_used"], 0);
  EXPECT_EQ(github["jobs_started"], 3);
  EXPECT_EQ(github["jobs_completed"], 3);
  auto d = depth("jobs");
  EXPECT_EQ(d.visible + d.in_flight + d.delayed, 0);
  EXPECT_EQ(depth("jobs-dlq").visible, 0);
}

TEST_F(NodeTest, TheCapHoldsAndWaitingJobsRunLater) {
  start_node();
  for (int64_t id = 1; id <= 12; ++id)
    inject_job(id, 2min);
  advance(30s);
  auto cloud = calls(try_ask<api_calls>(world.cloud, atom::stats_v));
  EXPECT_EQ(cloud["instances_launched"], 5);
  EXPECT_LE(cloud["peak_instances linux"], 5);
  advance(20min);
  cloud = calls(try_ask<api_calls>(world.cloud, atom::stats_v));
  auto github = calls(try_ask<api_calls>(world.github, atom::stats_v));
  EXPECT_EQ(github["jobs_completed"], 12);
  EXPECT_EQ(cloud["instances_launched"], 12);
  EXPECT_LE(cloud["peak_instances linux"], 5);
}

TEST_F(NodeTest, DrainFinishesLaunchesUnderWayAndGivesBackTheRest) {
  start_node();
  inject_job(1);
  inject_job(2);
  advance(1s); // decided and launched: configured, their messages deleted
  inject_job(3);
  inject_job(4);
  sched.run(); // delivered and received: in the scaler's window
  auto drained = try_ask<bool>(handles->node, atom::drain_v);
  EXPECT_FALSE(drained); // not yet: the loops end their long polls first
  advance(1s);
  auto answer = next_reply<bool>();
  // Pollers may still wait on a long poll; give them its full wait.
  if (!answer || !*answer) {
    advance(25s);
    answer = next_reply<bool>();
  }
  EXPECT_TRUE(answer && *answer);
  // Jobs 3 and 4 had no launch under way: given back for the next process,
  // not launched for and then abandoned.
  auto cloud = calls(try_ask<api_calls>(world.cloud, atom::stats_v));
  EXPECT_EQ(cloud["instances_launched"], 2);
  // After the drain nothing consumes the queue: new work stays on it.
  inject_job(5);
  advance(1min);
  cloud = calls(try_ask<api_calls>(world.cloud, atom::stats_v));
  EXPECT_EQ(cloud["instances_launched"], 2);
  EXPECT_EQ(queued_jobs(), (std::set<int64_t>{3, 4, 5}));
}

TEST_F(NodeTest, ExceedingRestartIntensityAtTheRootStopsTheNodeWithAnError) {
  start_node();
  self->monitor(handles->node);
  for (int i = 0; i < 3; ++i) {
    caf::anon_send(handles->node, atom::inject_v, std::string{"fleet_launcher"});
    advance(2s); // past the restart backoff
  }
  auto reason = down_reason();
  ASSERT_TRUE(reason);
  EXPECT_TRUE(*reason); // abnormal: the process exits non-zero
  handles.reset();
}

TEST_F(NodeTest, CrashesWithinIntensityAreRestartedAndCounted) {
  start_node();
  caf::anon_send(handles->node, atom::inject_v, std::string{"scaler/linux"});
  advance(2s);
  auto status = try_ask<node_status>(handles->node, atom::status_v);
  ASSERT_TRUE(status) << describe(status.error());
  int32_t restarts = 0;
  for (auto& child : status->children) {
    if (child.name == "scaler/linux")
      restarts = child.restarts;
    EXPECT_TRUE(child.running) << child.name;
  }
  EXPECT_EQ(restarts, 1);
  inject_job(1);
  advance(2min);
  auto cloud = calls(try_ask<api_calls>(world.cloud, atom::stats_v));
  EXPECT_EQ(cloud["instances_launched"], 1);
}

TEST_F(NodeTest, SpawnNodeNamesAMissingBackend) {
  backends partial = world.wiring;
  partial.ec2 = nullptr;
  auto h = spawn_node(sys, conf, partial, stats, conf.simulation.seed);
  ASSERT_FALSE(h);
  EXPECT_EQ(h.error(), errc::invalid_config);
  EXPECT_NE(describe(h.error()).find("EC2"), std::string::npos);
  partial = world.wiring;
  partial.queues.erase("jobs-dlq");
  h = spawn_node(sys, conf, partial, stats, conf.simulation.seed);
  ASSERT_FALSE(h);
  EXPECT_NE(describe(h.error()).find("jobs-dlq"), std::string::npos);
}
