// The poller supervisor with real pollers, against a mock queue (receives are
// held, as a long poll would be) and a mock registry, in virtual time.
#include "actors/poll_loops.hpp"
#include "actors/token_registry.hpp"
#include "tests/actor_test.hpp"

#include <memory>
#include <set>
#include <vector>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

/// Holds every receive until a `flush`, which answers them all empty.
struct queue_script {
  size_t receives = 0;
  std::vector<caf::typed_response_promise<received_batch>> held;
};

using queue_mock_actor = queue_actor::extend<caf::reacts_to<atom::flush>>;

queue_mock_actor spawn_queue(caf::actor_system& sys,
                             std::shared_ptr<queue_script> script) {
  return sys.spawn([](queue_mock_actor::pointer self,
                      std::shared_ptr<queue_script> script)
                     -> queue_mock_actor::behavior_type {
    auto all_ok = [](auto ids) {
      batch_result out;
      out.succeeded = std::move(ids);
      return out;
    };
    return {
      [=](atom::receive, const receive_request&) -> caf::result<received_batch> {
        ++script->receives;
        script->held.push_back(self->make_response_promise<received_batch>());
        return script->held.back();
      },
      [=](atom::remove, const std::vector<std::string>& receipts) {
        return all_ok(receipts);
      },
      [=](atom::visibility, const std::vector<visibility_change>& changes) {
        std::vector<std::string> ids;
        for (auto& c : changes)
          ids.push_back(c.receipt);
        return all_ok(ids);
      },
      [=](atom::enqueue, const std::vector<outgoing_message>& msgs) {
        std::vector<std::string> ids;
        for (size_t i = 0; i < msgs.size(); ++i)
          ids.push_back(std::to_string(i));
        return all_ok(ids);
      },
      [](atom::depth) { return queue_depth{}; },
      [=](atom::flush) {
        for (auto& promise : script->held)
          promise.deliver(received_batch{});
        script->held.clear();
      },
    };
  }, std::move(script));
}

/// Records heartbeats and lets every loop keep going.
lease_keeper_actor spawn_registry(caf::actor_system& sys,
                                  std::shared_ptr<std::vector<lease>> seen) {
  return sys.spawn(
    [](std::shared_ptr<std::vector<lease>> seen) -> lease_keeper_actor::behavior_type {
      return {[=](atom::heartbeat, const lease& held) {
        seen->push_back(held);
        return heartbeat_verdict::keep_going;
      }};
    },
    std::move(seen));
}

poller_setup setup_for(const std::string& name, queue_actor source) {
  poller_setup setup;
  setup.queue.name = name;
  setup.source = std::move(source);
  setup.loops.heartbeat = 5s;
  setup.timeouts.drain = 30s;
  return setup;
}

/// Stands in for the registry until it exists: the supervisor and the
/// registry each need the other's handle at spawn time.
lease_keeper_actor spawn_relay(caf::actor_system& sys,
                               std::shared_ptr<lease_keeper_actor> target) {
  return sys.spawn(
    [](lease_keeper_actor::pointer self, std::shared_ptr<lease_keeper_actor> target)
      -> lease_keeper_actor::behavior_type {
      return {[=](atom::heartbeat hb, const lease& held) {
        return self->delegate(*target, hb, held);
      }};
    },
    std::move(target));
}

class PollLoopsTest : public test::actor_test {
protected:
  PollLoopsTest() {
    jobs = stop_at_teardown(spawn_queue(sys, jobs_script));
    builds = stop_at_teardown(spawn_queue(sys, builds_script));
    auto registry = stop_at_teardown(spawn_registry(sys, heartbeats));
    std::map<std::string, poller_setup> setups;
    setups.emplace("jobs", setup_for("jobs", jobs));
    setups.emplace("builds", setup_for("builds", builds));
    loops = stop_at_teardown(
      sys.spawn(poll_loops, std::move(setups), registry, stats, uint64_t{9}));
  }

  /// Starts a loop holding a lease of `queue` and monitors it.
  poller_actor start(const std::string& queue, uint64_t loop_id) {
    auto loop = ask<poller_actor>(loops, atom::start_v,
                                  lease{queue, "token-" + std::to_string(loop_id),
                                        loop_id});
    if (loop)
      self->monitor(loop);
    return loop;
  }

  /// Exit reasons of the loops that went down so far, by address.
  std::map<caf::actor_addr, caf::error> downs() {
    std::map<caf::actor_addr, caf::error> out;
    bool more = true;
    while (more) {
      more = false;
      self->receive(
        [&](caf::down_msg& msg) {
          out.emplace(msg.source, std::move(msg.reason));
          more = true;
        },
        caf::after(std::chrono::seconds(0)) >> [] {});
    }
    return out;
  }

  metrics_ptr stats = std::make_shared<metrics>();
  std::shared_ptr<queue_script> jobs_script = std::make_shared<queue_script>();
  std::shared_ptr<queue_script> builds_script = std::make_shared<queue_script>();
  std::shared_ptr<std::vector<lease>> heartbeats
    = std::make_shared<std::vector<lease>>();
  queue_mock_actor jobs;
  queue_mock_actor builds;
  poll_loops_actor loops;
};

} // namespace

TEST_F(PollLoopsTest, StartsALoopThatPollsItsQueueAndHeartbeatsItsLease) {
  auto loop = start("jobs", 3);
  ASSERT_TRUE(loop);
  EXPECT_EQ(jobs_script->receives, 1u);
  EXPECT_EQ(builds_script->receives, 0u);
  advance(5s);
  ASSERT_EQ(heartbeats->size(), 1u);
  EXPECT_EQ((*heartbeats)[0].queue, "jobs");
  EXPECT_EQ((*heartbeats)[0].token, "token-3");
  EXPECT_EQ((*heartbeats)[0].loop_id, 3u);
}

TEST_F(PollLoopsTest, RefusesAQueueItHasNoSetupFor) {
  auto reply = try_ask<poller_actor>(loops, atom::start_v, lease{"nope", "t", 1});
  ASSERT_FALSE(reply);
  EXPECT_EQ(reply.error(), errc::not_found);
}

TEST_F(PollLoopsTest, OutlivesACrashedLoop) {
  auto first = start("jobs", 1);
  auto second = start("jobs", 2);
  self->send_exit(first, caf::exit_reason::kill);
  sched.run();
  auto gone = downs();
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone.count(first.address()), 1u);
  EXPECT_TRUE(start("jobs", 3)) << "the supervisor went down with its loop";
  EXPECT_TRUE(downs().empty());
}

TEST_F(PollLoopsTest, InjectKillsOneLoopOfThatQueue) {
  auto a = start("jobs", 1);
  auto b = start("jobs", 2);
  auto c = start("builds", 3);
  self->send(loops, atom::inject_v, std::string{"jobs"});
  sched.run();
  auto gone = downs();
  ASSERT_EQ(gone.size(), 1u);
  auto& [who, reason] = *gone.begin();
  EXPECT_TRUE(who == a.address() || who == b.address());
  EXPECT_EQ(reason, caf::exit_reason::kill);
  // The next one takes the other loop of the queue; the builds loop stays.
  self->send(loops, atom::inject_v, std::string{"jobs"});
  sched.run();
  EXPECT_EQ(downs().size(), 1u);
  self->send(loops, atom::inject_v, std::string{"jobs"});
  sched.run();
  EXPECT_TRUE(downs().empty());
  EXPECT_TRUE(c);
}

TEST_F(PollLoopsTest, DrainStopsEveryLoopAndStartsNoMore) {
  start("jobs", 1);
  start("builds", 2);
  self->send(loops, atom::drain_v);
  sched.run();
  EXPECT_FALSE(next_reply<bool>()) << "answered while receives were in flight";
  self->send(jobs, atom::flush_v);
  self->send(builds, atom::flush_v);
  sched.run();
  auto reply = next_reply<bool>();
  ASSERT_TRUE(reply);
  EXPECT_TRUE(*reply);
  auto gone = downs();
  ASSERT_EQ(gone.size(), 2u);
  for (auto& entry : gone)
    EXPECT_FALSE(entry.second) << sys.render(entry.second);
  auto refused = try_ask<poller_actor>(loops, atom::start_v, lease{"jobs", "t", 4});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::shutting_down);
}

TEST_F(PollLoopsTest, DrainGivesUpOnALoopPastItsBudget) {
  start("jobs", 1);
  self->send(loops, atom::drain_v);
  advance(30s); // the receive is never answered
  auto reply = next_reply<bool>();
  ASSERT_TRUE(reply);
  EXPECT_TRUE(*reply);
}

TEST_F(PollLoopsTest, NoLoopOutlivesIt) {
  auto a = start("jobs", 1);
  auto b = start("builds", 2);
  self->send_exit(loops, caf::exit_reason::user_shutdown);
  sched.run();
  auto gone = downs();
  ASSERT_EQ(gone.size(), 2u);
  EXPECT_EQ(gone.at(a.address()), caf::exit_reason::kill);
  EXPECT_EQ(gone.at(b.address()), caf::exit_reason::kill);
}

namespace {

/// The real registry, supervisor and pollers together over one queue.
class PollLoopsWithRegistryTest : public test::actor_test {
protected:
  PollLoopsWithRegistryTest() {
    auto target = std::make_shared<lease_keeper_actor>();
    auto relay = stop_at_teardown(spawn_relay(sys, target));
    jobs = stop_at_teardown(spawn_queue(sys, jobs_script));
    loops = stop_at_teardown(
      sys.spawn(poll_loops, std::map<std::string, poller_setup>{
                              {"jobs", setup_for("jobs", jobs)}},
                relay, stats, uint64_t{3}));
    queue_config q;
    q.name = "jobs";
    q.min_loops = 1;
    q.max_loops = 3;
    poll_loops_config cfg;
    cfg.heartbeat = 5s;
    cfg.stale_after = 15s;
    cfg.sample_every = 30s;
    registry = stop_at_teardown(sys.spawn(
      token_registry, std::vector<queue_config>{q},
      std::map<std::string, queue_depth_actor>{}, loops, cfg, timeouts_config{},
      stats, uint64_t{4}));
    *target = registry;
    sched.run();
  }

  queue_loops jobs_loops() {
    auto st = ask<registry_status>(registry, atom::status_v);
    return st.queues.empty() ? queue_loops{} : st.queues[0];
  }

  metrics_ptr stats = std::make_shared<metrics>();
  std::shared_ptr<queue_script> jobs_script = std::make_shared<queue_script>();
  queue_mock_actor jobs;
  poll_loops_actor loops;
  token_registry_actor registry;
};

} // namespace

TEST_F(PollLoopsWithRegistryTest, AKilledLoopIsReplacedAtOnce) {
  EXPECT_EQ(jobs_script->receives, 1u);
  self->send(loops, atom::inject_v, std::string{"jobs"});
  sched.run();
  auto st = jobs_loops();
  EXPECT_EQ(st.revived, 1);
  EXPECT_EQ(st.loops, 1);
  EXPECT_EQ(st.max_revival_seconds, 0.0);
  // The replacement polls and heartbeats under the current loop id.
  EXPECT_EQ(jobs_script->receives, 2u);
  advance(10s);
  EXPECT_EQ(jobs_loops().fenced, 0);
  EXPECT_EQ(jobs_loops().revived, 1);
}

TEST_F(PollLoopsWithRegistryTest, ARevokedLoopStopsAfterItsReceiveAtItsNextHeartbeat) {
  ask<lease>(registry, atom::acquire_v, std::string{"jobs"});
  sched.run();
  EXPECT_EQ(jobs_script->receives, 2u);
  EXPECT_TRUE(ask<bool>(registry, atom::revoke_v, std::string{"jobs"}));
  advance(5s); // its heartbeat is refused
  EXPECT_EQ(jobs_loops().fenced, 1);
  self->send(jobs, atom::flush_v); // both receives come back empty
  sched.run();
  // Only the loop that still holds a lease polls again; nothing was revived.
  EXPECT_EQ(jobs_script->receives, 3u);
  EXPECT_EQ(jobs_script->held.size(), 1u);
  advance(30s);
  EXPECT_EQ(jobs_loops().revived, 0);
  EXPECT_EQ(jobs_loops().loops, 1);
}

TEST_F(PollLoopsWithRegistryTest, DrainingTheRegistryStopsEveryLoop) {
  ask<lease>(registry, atom::acquire_v, std::string{"jobs"});
  sched.run();
  self->send(registry, atom::drain_v);
  sched.run();
  self->send(jobs, atom::flush_v);
  sched.run();
  auto reply = next_reply<bool>();
  ASSERT_TRUE(reply);
  EXPECT_TRUE(*reply);
  EXPECT_EQ(jobs_script->receives, 2u);
  EXPECT_TRUE(jobs_script->held.empty());
  advance(60s);
  EXPECT_EQ(jobs_script->receives, 2u) << "a loop was revived after the drain";
}
