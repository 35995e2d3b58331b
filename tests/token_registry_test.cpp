// The token registry against a mock poller supervisor (whose loops are idle
// mock pollers) and mock queue depths, in virtual time. The tests play the
// loops' part: they heartbeat the leases they hold and stop when told to.
#include "actors/token_registry.hpp"
#include "tests/actor_test.hpp"

#include <map>
#include <memory>
#include <set>
#include <vector>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

/// Every start asked of the supervisor, and the loop it started; the next
/// `failures` starts fail.
struct loops_script {
  std::vector<lease> attempts;
  std::vector<std::pair<lease, poller_actor>> started;
  int32_t failures = 0;
  int32_t drains = 0;
};

/// A loop that does nothing (the test heartbeats for it). Takes the script
/// as CAF 0.17.6 trips UBSan on a function actor spawned without arguments.
poller_actor::behavior_type idle_loop(poller_actor::pointer self,
                                      std::shared_ptr<loops_script>) {
  return {
    [](atom::poll) {},
    [](atom::heartbeat) {},
    [](atom::visibility) {},
    [](atom::flush) {},
    [=](atom::drain) {
      self->quit();
      return true;
    },
  };
}

poll_loops_actor spawn_loops(caf::actor_system& sys,
                             std::shared_ptr<loops_script> script) {
  return sys.spawn([](poll_loops_actor::pointer self,
                      std::shared_ptr<loops_script> script)
                     -> poll_loops_actor::behavior_type {
    return {
      [=](atom::start, const lease& held) -> caf::result<poller_actor> {
        script->attempts.push_back(held);
        if (script->failures > 0) {
          --script->failures;
          return caf::make_error(errc::unavailable, "supervisor restarting");
        }
        auto loop = self->spawn(idle_loop, script);
        script->started.emplace_back(held, loop);
        return loop;
      },
      [=](atom::drain) {
        ++script->drains;
        return true;
      },
      [](atom::inject, const std::string&) {},
    };
  }, std::move(script));
}

queue_depth_actor spawn_depth(caf::actor_system& sys,
                              std::shared_ptr<queue_depth> depth) {
  return sys.spawn(
    [](std::shared_ptr<queue_depth> depth) -> queue_depth_actor::behavior_type {
      return {[=](atom::depth) { return *depth; }};
    },
    std::move(depth));
}

queue_config queue_named(std::string name, int32_t min_loops, int32_t max_loops) {
  queue_config q;
  q.name = std::move(name);
  q.min_loops = min_loops;
  q.max_loops = max_loops;
  q.scale_up_depth = 100;
  q.scale_down_depth = 10;
  return q;
}

class TokenRegistryTest : public test::actor_test {
protected:
  TokenRegistryTest() {
    cfg_loops.heartbeat = 5s;
    cfg_loops.stale_after = 15s;
    cfg_loops.sample_every = 10s;
    timeouts.aws_call = 3s;
    timeouts.drain = 30s;
  }

  /// Spawns the registry over "jobs" (1 to 3 loops, sampled) and "builds"
  /// (2 loops, not sampled), and takes up the loops it started.
  void start() {
    auto loops = stop_at_teardown(spawn_loops(sys, script));
    auto depth = stop_at_teardown(spawn_depth(sys, jobs_depth));
    registry = stop_at_teardown(sys.spawn(
      token_registry,
      std::vector<queue_config>{queue_named("jobs", 1, 3), queue_named("builds", 2, 2)},
      std::map<std::string, queue_depth_actor>{{"jobs", depth}}, loops, cfg_loops,
      timeouts, stats, uint64_t{5}));
    sched.run();
    take_up_started();
  }

  /// The loops started since the last call now run: they hold their lease.
  void take_up_started() {
    for (; taken < script->started.size(); ++taken) {
      auto& [held, loop] = script->started[taken];
      stop_at_teardown(loop);
      running[held.token] = held;
    }
  }

  heartbeat_verdict beat(const lease& held) {
    return ask<heartbeat_verdict>(registry, atom::heartbeat_v, held);
  }

  /// Every running loop heartbeats; those told to stop do. Returns how many.
  size_t beat_all() {
    size_t stopped = 0;
    for (auto i = running.begin(); i != running.end();) {
      if (beat(i->second) == heartbeat_verdict::stop) {
        i = running.erase(i);
        ++stopped;
      } else {
        ++i;
      }
    }
    return stopped;
  }

  /// `n` heartbeat periods pass with every running loop heartbeating.
  size_t periods(int n) {
    size_t stopped = 0;
    for (int i = 0; i < n; ++i) {
      advance(5s);
      take_up_started();
      stopped += beat_all();
    }
    return stopped;
  }

  queue_loops loops_of(const std::string& queue) {
    auto st = ask<registry_status>(registry, atom::status_v);
    for (auto& q : st.queues)
      if (q.queue == queue)
        return q;
    ADD_FAILURE() << "no status for queue " << queue;
    return {};
  }

  int32_t running_of(const std::string& queue) {
    int32_t n = 0;
    for (auto& entry : running)
      n += entry.second.queue == queue ? 1 : 0;
    return n;
  }

  void depth(int64_t visible, int64_t in_flight = 0) {
    jobs_depth->visible = visible;
    jobs_depth->in_flight = in_flight;
  }

  metrics_ptr stats = std::make_shared<metrics>();
  poll_loops_config cfg_loops;
  timeouts_config timeouts;
  std::shared_ptr<loops_script> script = std::make_shared<loops_script>();
  std::shared_ptr<queue_depth> jobs_depth = std::make_shared<queue_depth>();
  token_registry_actor registry;
  std::map<std::string, lease> running; // by token: the loops now running
  size_t taken = 0;
};

} // namespace

TEST_F(TokenRegistryTest, StartsTheMinimumOfLoopsPerQueue) {
  start();
  ASSERT_EQ(script->started.size(), 3u);
  std::set<std::string> tokens;
  std::set<uint64_t> ids;
  for (auto& [held, loop] : script->started) {
    EXPECT_EQ(held.token.size(), 32u);
    EXPECT_EQ(held.token.find_first_not_of("0123456789abcdef"), std::string::npos);
    tokens.insert(held.token);
    ids.insert(held.loop_id);
  }
  EXPECT_EQ(tokens.size(), 3u);
  EXPECT_EQ(ids, (std::set<uint64_t>{1, 2, 3}));
  EXPECT_EQ(running_of("jobs"), 1);
  EXPECT_EQ(running_of("builds"), 2);
  EXPECT_EQ(loops_of("jobs").loops, 1);
  EXPECT_EQ(loops_of("builds").loops, 2);
  EXPECT_EQ(stats->gauge("ghscale_poll_loops", {{"queue", "builds"}}), 2);
  EXPECT_EQ(beat_all(), 0u);
}

TEST_F(TokenRegistryTest, ScalesUpOnHighDepthUpToTheMaximum) {
  start();
  depth(80, 30); // visible + in flight is high
  periods(2);    // the first sample, at 10 s
  EXPECT_EQ(loops_of("jobs").loops, 2);
  EXPECT_EQ(running_of("jobs"), 2);
  periods(2);
  periods(2);
  auto jobs = loops_of("jobs");
  EXPECT_EQ(jobs.loops, 3);
  EXPECT_EQ(running_of("jobs"), 3);
  EXPECT_TRUE(jobs.alarm);
  EXPECT_EQ(jobs.scaled_up, 2);
  EXPECT_EQ(jobs.depth.visible, 80);
  EXPECT_EQ(stats->gauge("ghscale_queue_depth", {{"queue", "jobs"}, {"kind", "in_flight"}}),
            30);
  EXPECT_EQ(stats->gauge("ghscale_poll_loops", {{"queue", "jobs"}}), 3);
  // "builds" is fixed at 2 and not sampled.
  EXPECT_EQ(loops_of("builds").loops, 2);
}

TEST_F(TokenRegistryTest, ScalesDownOnlyAfterDepthCameBackFromHigh) {
  start();
  ask<lease>(registry, atom::acquire_v, std::string{"jobs"});
  depth(0);
  EXPECT_EQ(periods(6), 0u) << "normal depth without a prior high revoked a loop";
  EXPECT_EQ(loops_of("jobs").loops, 2);
  EXPECT_FALSE(loops_of("jobs").alarm);
  depth(150);
  periods(2);
  EXPECT_EQ(loops_of("jobs").loops, 3);
  depth(50); // between the marks: hold, alarm stays on
  EXPECT_EQ(periods(4), 0u);
  EXPECT_EQ(loops_of("jobs").loops, 3);
  EXPECT_TRUE(loops_of("jobs").alarm);
  depth(5); // back to normal: one loop fewer per sample, down to the minimum
  EXPECT_EQ(periods(2), 1u);
  EXPECT_FALSE(loops_of("jobs").alarm);
  EXPECT_EQ(loops_of("jobs").loops, 2);
  EXPECT_EQ(periods(2), 1u);
  EXPECT_EQ(loops_of("jobs").loops, 1);
  EXPECT_EQ(running_of("jobs"), 1);
  // At the minimum scale-down ends: a loop added now stays until the next high.
  ask<lease>(registry, atom::acquire_v, std::string{"jobs"});
  EXPECT_EQ(periods(6), 0u);
  EXPECT_EQ(loops_of("jobs").loops, 2);
  auto jobs = loops_of("jobs");
  EXPECT_EQ(jobs.scaled_up, 1);
  EXPECT_EQ(jobs.scaled_down, 2);
  EXPECT_EQ(jobs.fenced, 2);
}

TEST_F(TokenRegistryTest, RevokeStopsOneLoopAtItsNextHeartbeat) {
  start();
  auto added = ask<lease>(registry, atom::acquire_v, std::string{"jobs"});
  EXPECT_EQ(added.queue, "jobs");
  EXPECT_EQ(added.loop_id, 4u);
  sched.run();
  take_up_started();
  EXPECT_EQ(running_of("jobs"), 2);
  EXPECT_TRUE(ask<bool>(registry, atom::revoke_v, std::string{"jobs"}));
  EXPECT_EQ(loops_of("jobs").loops, 1);
  EXPECT_EQ(beat_all(), 1u);
  EXPECT_EQ(running_of("jobs"), 1);
  EXPECT_EQ(loops_of("jobs").fenced, 1);
  EXPECT_EQ(stats->count("ghscale_loop_heartbeats_refused_total", {{"queue", "jobs"}}),
            1);
  // The revoked loop stopping on its own is not a death: nothing is revived.
  periods(4);
  EXPECT_EQ(loops_of("jobs").revived, 0);
  EXPECT_EQ(script->started.size(), 4u);
}

TEST_F(TokenRegistryTest, KeepsEachQueueWithinItsBounds) {
  start();
  EXPECT_FALSE(ask<bool>(registry, atom::revoke_v, std::string{"jobs"}));
  EXPECT_FALSE(ask<bool>(registry, atom::revoke_v, std::string{"builds"}));
  ask<lease>(registry, atom::acquire_v, std::string{"jobs"});
  ask<lease>(registry, atom::acquire_v, std::string{"jobs"});
  auto over = try_ask<lease>(registry, atom::acquire_v, std::string{"jobs"});
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error(), errc::over_capacity);
  auto unknown = try_ask<lease>(registry, atom::acquire_v, std::string{"nope"});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error(), errc::not_found);
  auto unknown_revoke = try_ask<bool>(registry, atom::revoke_v, std::string{"nope"});
  ASSERT_FALSE(unknown_revoke);
  EXPECT_EQ(unknown_revoke.error(), errc::not_found);
  EXPECT_EQ(loops_of("jobs").loops, 3);
}

TEST_F(TokenRegistryTest, FencesALoopThatWentQuiet) {
  start();
  auto token = script->started[0].first.token;
  auto quiet = running.at(token);
  ASSERT_EQ(quiet.queue, "jobs");
  running.erase(token); // it overruns: no more heartbeats
  int elapsed = 0;
  while (script->started.size() == 3u && elapsed < 60) {
    periods(1);
    elapsed += 5;
  }
  ASSERT_EQ(script->started.size(), 4u) << "never replaced";
  // Replaced within stale_after plus one tick.
  EXPECT_LE(elapsed, 20);
  auto replacement = script->started[3].first;
  EXPECT_EQ(replacement.token, token);
  EXPECT_GT(replacement.loop_id, quiet.loop_id);
  auto jobs = loops_of("jobs");
  EXPECT_EQ(jobs.loops, 1);
  EXPECT_EQ(jobs.revived, 1);
  EXPECT_GT(jobs.max_revival_seconds, 15.0);
  EXPECT_LE(jobs.max_revival_seconds, 20.0);
  EXPECT_EQ(stats->count("ghscale_loops_revived_total", {{"queue", "jobs"}}), 1);
  // The old loop was only slow: its next heartbeat is refused.
  EXPECT_EQ(beat(quiet), heartbeat_verdict::stop);
  EXPECT_EQ(beat(replacement), heartbeat_verdict::keep_going);
  EXPECT_EQ(loops_of("jobs").fenced, 1);
  // Its exit afterwards is forgotten, not revived.
  self->send_exit(script->started[0].second, caf::exit_reason::user_shutdown);
  periods(4);
  EXPECT_EQ(script->started.size(), 4u);
}

TEST_F(TokenRegistryTest, ReplacesAKilledLoopAtOnce) {
  start();
  auto [held, loop] = script->started[0];
  self->send_exit(loop, caf::exit_reason::kill);
  sched.run();
  ASSERT_EQ(script->started.size(), 4u) << "not replaced at once";
  auto replacement = script->started[3].first;
  EXPECT_EQ(replacement.token, held.token);
  EXPECT_EQ(replacement.loop_id, 4u);
  auto jobs = loops_of(held.queue);
  EXPECT_EQ(jobs.revived, 1);
  EXPECT_EQ(jobs.max_revival_seconds, 0.0);
  EXPECT_EQ(jobs.loops, held.queue == "jobs" ? 1 : 2);
  auto histograms = stats->histograms();
  auto revival = std::find_if(histograms.begin(), histograms.end(), [](auto& h) {
    return h.first.find("ghscale_loop_revival_seconds") == 0;
  });
  ASSERT_NE(revival, histograms.end());
  EXPECT_EQ(revival->second.count, 1);
}

TEST_F(TokenRegistryTest, RetriesAFailedStartAtTheNextTick) {
  script->failures = 1;
  start();
  EXPECT_EQ(script->attempts.size(), 3u);
  EXPECT_EQ(script->started.size(), 2u);
  EXPECT_EQ(loops_of(script->attempts[0].queue).loops,
            script->attempts[0].queue == "jobs" ? 1 : 2);
  periods(1);
  ASSERT_EQ(script->started.size(), 3u);
  EXPECT_EQ(script->started[2].first.token, script->attempts[0].token);
  EXPECT_EQ(script->started[2].first.loop_id, 4u);
  // The failed attempt's loop id is no longer current.
  EXPECT_EQ(beat(script->attempts[0]), heartbeat_verdict::stop);
}

TEST_F(TokenRegistryTest, DrainStopsTickingRevivingAndScaling) {
  start();
  depth(500);
  EXPECT_TRUE(ask<bool>(registry, atom::drain_v));
  EXPECT_EQ(script->drains, 1);
  self->send_exit(script->started[0].second, caf::exit_reason::kill);
  advance(60s);
  EXPECT_EQ(script->attempts.size(), 3u);
  auto refused = try_ask<lease>(registry, atom::acquire_v, std::string{"jobs"});
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::shutting_down);
  EXPECT_TRUE(sched.clock().schedule().empty()) << "still ticking";
}
