// The reaper against scripted EC2, ledger, GitHub App and installation
// client mocks (typed, in process), in virtual time.
#include "actors/reaper.hpp"
#include "tests/actor_test.hpp"

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

using namespace ghscale;
using namespace std::chrono_literals;
using test::log_capture;

namespace {

// -- scripted backends -----------------------------------------------------------

struct backend_script {
  // EC2
  std::vector<instance_info> instances; // what DescribeInstances shows
  std::vector<instance_filter> describes;
  std::vector<std::vector<std::string>> terminate_calls;
  std::vector<instance_tags> tag_calls;
  // Ledger: the view answered to reconciliation number `index` (from 0).
  std::function<pool_view(const pool_inventory&, size_t index)> view;
  std::vector<pool_inventory> inventories;
  std::vector<std::vector<std::string>> ledger_terminated;
  // GitHub
  std::vector<int64_t> client_lookups;
  std::map<std::string, std::vector<runner_info>> runners_by_target; // full name
  std::vector<repository_ref> listed;
  std::string failing_target; // listing this target fails
  std::vector<runner_removal> removals;
  /// Answer to deleting runner `id`; default: deleted.
  std::map<int64_t, caf::error> removal_errors;
  /// Deletions wait unanswered until the client gets `flush`.
  bool hold_removals = false;
  std::vector<std::pair<caf::typed_response_promise<int64_t>, int64_t>> held;

  size_t unregistered(int64_t runner_id) const {
    return static_cast<size_t>(
      std::count_if(removals.begin(), removals.end(),
                    [&](const runner_removal& x) { return x.runner_id == runner_id; }));
  }
};
using script_ptr = std::shared_ptr<backend_script>;

ec2_actor::behavior_type mock_ec2(ec2_actor::pointer, script_ptr script) {
  return {
    [](atom::fleet, fleet_request&) -> caf::result<fleet_result> {
      return caf::make_error(errc::rejected, "the reaper launches nothing");
    },
    [script](atom::describe, instance_filter& filter) {
      script->describes.push_back(filter);
      return instance_list{script->instances};
    },
    [script](atom::terminate, instance_ids& ids) {
      script->terminate_calls.push_back(ids.ids);
      return batch_result{ids.ids, {}};
    },
    [script](atom::add_tags, instance_tags& call) {
      script->tag_calls.push_back(call);
      return batch_result{call.ids, {}};
    },
  };
}

/// An EC2 that never answers: its callers' requests time out.
ec2_actor::behavior_type silent_ec2(ec2_actor::pointer self, script_ptr script) {
  return {
    [self](atom::fleet, fleet_request&) {
      return self->make_response_promise<fleet_result>();
    },
    [self, script](atom::describe, instance_filter& filter) {
      script->describes.push_back(filter);
      return self->make_response_promise<instance_list>();
    },
    [self](atom::terminate, instance_ids&) {
      return self->make_response_promise<batch_result>();
    },
    [self](atom::add_tags, instance_tags&) {
      return self->make_response_promise<batch_result>();
    },
  };
}

ledger_reconciler_actor::behavior_type mock_ledger(ledger_reconciler_actor::pointer,
                                                   script_ptr script) {
  return {
    [script](atom::reconcile, pool_inventory& inventory) {
      script->inventories.push_back(inventory);
      return script->view ? script->view(inventory, script->inventories.size() - 1)
                          : pool_view{};
    },
    [script](atom::terminate, instance_ids& ids) {
      script->ledger_terminated.push_back(ids.ids);
    },
  };
}

installation_client_actor::behavior_type
mock_installation(installation_client_actor::pointer self, script_ptr script) {
  return {
    [](atom::registration, registration_request&) -> caf::result<runner_registration> {
      return caf::make_error(errc::rejected, "the reaper registers nothing");
    },
    [](atom::job_status, job_status_query&) { return std::string{"queued"}; },
    [script](atom::runners, repository_ref& target) -> caf::result<runner_list> {
      script->listed.push_back(target);
      if (target.full_name() == script->failing_target)
        return caf::make_error(errc::backend_failure, "list_runners: 502");
      return runner_list{script->runners_by_target[target.full_name()]};
    },
    [self, script](atom::unregister, runner_removal& removal) -> caf::result<int64_t> {
      script->removals.push_back(removal);
      if (script->hold_removals) {
        script->held.emplace_back(self->make_response_promise<int64_t>(),
                                  removal.runner_id);
        return script->held.back().first;
      }
      auto failure = script->removal_errors.find(removal.runner_id);
      if (failure != script->removal_errors.end())
        return failure->second;
      return removal.runner_id;
    },
    [](atom::admit, const registration_admission& req) {
      return admitted_registrations{req.count, 1, caf::timespan{0}};
    },
    [](atom::release, uint64_t) {},
    [](atom::drain) { return true; },
    [](atom::budget) { return budget_status{}; },
    [script](atom::flush) {
      for (auto& [promise, runner_id] : std::exchange(script->held, {}))
        promise.deliver(runner_id);
    },
  };
}

github_app_actor::behavior_type mock_app(github_app_actor::pointer, script_ptr script,
                                         installation_client_actor client) {
  return {
    [script, client](atom::client, int64_t installation) {
      script->client_lookups.push_back(installation);
      return client;
    },
    [](atom::lookup, repository_ref&) -> caf::result<int64_t> {
      return caf::make_error(errc::not_found, "the reaper looks nothing up");
    },
    [](atom::drain, caf::timespan) { return true; },
    [](atom::mint, int64_t) -> caf::result<github_response> {
      return caf::make_error(errc::rejected, "the reaper mints nothing");
    },
  };
}

// -- building blocks of scripted worlds ---------------------------------------------

const repository_ref org{"octo-org", "", owner_type::organization};
const repository_ref user_repo{"alice", "tools", owner_type::user};

instance_info instance(const std::string& id, const repository_ref& target,
                       int64_t installation) {
  instance_info out;
  out.instance_id = id;
  out.state = instance_state::running;
  // As the launcher tags them (literal keys: the test pins the names).
  out.tags = {{"ghscale:pool", "linux"},
              {"ghscale:owner", target.full_name()},
              {"ghscale:owner-type",
               target.type == owner_type::user ? "User" : "Organization"},
              {"ghscale:installation", std::to_string(installation)}};
  return out;
}

runner_view runner(const std::string& instance_id, runner_state state,
                   caf::timespan launched_at, int64_t runner_id) {
  runner_view out;
  out.instance_id = instance_id;
  out.runner_name = "linux-" + instance_id;
  out.state = state;
  out.target = org;
  out.installation_id = 7;
  out.runner_id = runner_id;
  out.launched_at = launched_at;
  out.registered = runner_id != 0;
  return out;
}

std::vector<std::string> sorted(std::vector<std::string> xs) {
  std::sort(xs.begin(), xs.end());
  return xs;
}

class reaper_test : public test::actor_test {
protected:
  reaper_test() {
    pool.name = "linux";
    pool.reap_interval = 1min;
    pool.minimum_running_time = 5min;
    pool.boot_time = 5min;
    pool.min_idle = 0;
  }

  caf::timespan clock_now() { return sched.clock().now().time_since_epoch(); }

  reaper_actor spawn_reaper(clock_bridge wall = {}) {
    return stop_at_teardown(
      sys.spawn(reaper, pool, ec2, ledger, app, timeouts, wall, stats));
  }

  /// Answers every reconciliation with `view`.
  void always(pool_view view) {
    script->view = [view](const pool_inventory&, size_t) { return view; };
  }

  reap_report reap(const reaper_actor& r) { return ask<reap_report>(r, atom::reap_v); }

  std::vector<std::string> terminated() const {
    std::vector<std::string> out;
    for (auto& call : script->terminate_calls)
      out.insert(out.end(), call.begin(), call.end());
    return sorted(out);
  }

  pool_config pool;
  timeouts_config timeouts;
  script_ptr script = std::make_shared<backend_script>();
  metrics_ptr stats = std::make_shared<metrics>();
  ec2_actor ec2 = sys.spawn(mock_ec2, script);
  ledger_reconciler_actor ledger = sys.spawn(mock_ledger, script);
  installation_client_actor client = sys.spawn(mock_installation, script);
  github_app_actor app = sys.spawn(mock_app, script, client);
};

} // namespace

TEST_F(reaper_test, DescribesThePoolAndListsOnlyItsRunnersPerTarget) {
  script->instances = {instance("i-1", org, 7), instance("i-2", org, 7),
                       instance("i-3", user_repo, 9)};
  script->runners_by_target["octo-org"] = {{11, "linux-i-1", "online", false, {}},
                                           {12, "gpu-i-9", "online", false, {}},
                                           {13, "linux-i-2", "online", true, {}}};
  script->runners_by_target["alice/tools"] = {{21, "linux-i-3", "online", false, {}}};
  auto r = spawn_reaper();
  auto report = reap(r);
  ASSERT_EQ(script->describes.size(), 1u);
  ASSERT_EQ(script->describes[0].tags.size(), 1u);
  EXPECT_EQ(script->describes[0].tags[0].key, "ghscale:pool");
  EXPECT_EQ(script->describes[0].tags[0].value, "linux");
  ASSERT_EQ(script->listed.size(), 2u);
  EXPECT_EQ(script->listed[0], org);
  EXPECT_EQ(script->listed[1], user_repo);
  EXPECT_EQ(script->client_lookups, (std::vector<int64_t>{7, 9}));
  ASSERT_EQ(script->inventories.size(), 1u);
  auto& inventory = script->inventories[0];
  EXPECT_EQ(inventory.instances.size(), 3u);
  EXPECT_TRUE(inventory.registrations_complete);
  EXPECT_EQ(inventory.asked_at, clock_now());
  ASSERT_EQ(inventory.registrations.size(), 3u); // gpu-i-9 is another pool's
  EXPECT_EQ(inventory.registrations[0].runner.name, "linux-i-1");
  EXPECT_EQ(inventory.registrations[0].installation_id, 7);
  EXPECT_EQ(inventory.registrations[1].runner.name, "linux-i-2");
  EXPECT_EQ(inventory.registrations[2].runner.name, "linux-i-3");
  EXPECT_EQ(inventory.registrations[2].target, user_repo);
  EXPECT_EQ(inventory.registrations[2].installation_id, 9);
  EXPECT_EQ(report.api_calls, 3); // describe + two listings
  EXPECT_EQ(report.errors, 0);
}

TEST_F(reaper_test, TargetsOfThePreviousViewAreListedAgain) {
  auto remembered = runner("i-gone", runner_state::ready, clock_now(), 31);
  remembered.target = user_repo;
  remembered.installation_id = 9;
  always(pool_view{{remembered}, {}});
  auto r = spawn_reaper();
  reap(r); // no instance names a target: nothing to list yet
  EXPECT_TRUE(script->listed.empty());
  always(pool_view{});
  reap(r);
  ASSERT_EQ(script->listed.size(), 1u);
  EXPECT_EQ(script->listed[0], user_repo);
  EXPECT_EQ(script->client_lookups, std::vector<int64_t>{9});
}

TEST_F(reaper_test, IdleRetiredPastMinimumRunningTimeAndKeptBelowIt) {
  auto t = clock_now();
  script->instances = {instance("i-old", org, 7), instance("i-young", org, 7)};
  always(pool_view{{runner("i-old", runner_state::ready, t - 10min, 101),
                    runner("i-young", runner_state::ready, t - 2min, 102)},
                   {}});
  log_capture logs;
  auto r = spawn_reaper();
  auto report = reap(r);
  ASSERT_EQ(script->removals.size(), 1u);
  EXPECT_EQ(script->removals[0].runner_id, 101);
  EXPECT_EQ(script->removals[0].target, org);
  EXPECT_EQ(script->terminate_calls,
            std::vector<std::vector<std::string>>{{"i-old"}});
  EXPECT_EQ(script->ledger_terminated,
            std::vector<std::vector<std::string>>{{"i-old"}});
  EXPECT_EQ(report.idle_retired, 1);
  EXPECT_EQ(report.api_calls, 4); // describe, list, unregister, terminate
  EXPECT_EQ(stats->count("ghscale_reaper_actions_total",
                         {{"action", "idle_retired"}, {"pool", "linux"}}),
            1);
  EXPECT_EQ(log_capture::lines_containing("reaper retired idle runner"), 1u);
  EXPECT_EQ(log_capture::lines_containing("linux-i-old"), 1u);
}

TEST_F(reaper_test, TheNewestMinIdleReadyRunnersAreKept) {
  auto t = clock_now();
  pool.min_idle = 2;
  always(pool_view{{runner("i-a", runner_state::ready, t - 40min, 1),
                    runner("i-b", runner_state::ready, t - 10min, 2),
                    runner("i-c", runner_state::running, t - 50min, 3),
                    runner("i-d", runner_state::ready, t - 30min, 4),
                    runner("i-e", runner_state::ready, t - 20min, 5)},
                   {}});
  auto r = spawn_reaper();
  auto report = reap(r);
  EXPECT_EQ(terminated(), (std::vector<std::string>{"i-a", "i-d"}));
  EXPECT_EQ(script->terminate_calls.size(), 1u); // one batch
  EXPECT_EQ(script->unregistered(3), 0u);        // running: not idle
  EXPECT_EQ(report.idle_retired, 2);
}

TEST_F(reaper_test, IdleScheduleRaisesTheMinimumInItsWindow) {
  auto t = clock_now();
  pool.idle_schedule = {{"* 9-17 * * mon-fri", "Europe/Amsterdam", 3}};
  always(pool_view{{runner("i-a", runner_state::ready, t - 40min, 1),
                    runner("i-b", runner_state::ready, t - 30min, 2),
                    runner("i-c", runner_state::ready, t - 20min, 3)},
                   {}});
  // Monday 2026-11-23, 09:00 UTC is 10:00 in Amsterdam: inside the window.
  caf::timespan monday_9_utc = std::chrono::seconds{1795424400};
  auto in_window = spawn_reaper(clock_bridge{monday_9_utc, t});
  EXPECT_EQ(reap(in_window).idle_retired, 0);
  EXPECT_TRUE(script->removals.empty());
  // Eight hours later (18:00 in Amsterdam) the pool's own minimum of 0 holds.
  auto after_window = spawn_reaper(clock_bridge{monday_9_utc - 8h, t - 16h});
  EXPECT_EQ(reap(after_window).idle_retired, 3);
  EXPECT_EQ(terminated(), (std::vector<std::string>{"i-a", "i-b", "i-c"}));
}

TEST_F(reaper_test, BadIdleScheduleRetiresNothingAndCountsAnError) {
  auto t = clock_now();
  pool.idle_schedule = {{"* * * * *", "Nowhere/Town", 3}};
  always(pool_view{{runner("i-a", runner_state::ready, t - 40min, 1)}, {}});
  auto r = spawn_reaper();
  auto report = reap(r);
  EXPECT_EQ(report.idle_retired, 0);
  EXPECT_EQ(report.errors, 1);
  EXPECT_TRUE(script->removals.empty());
}

TEST_F(reaper_test, RunnerThatTookAJobIsKeptAndNotTerminated) {
  auto t = clock_now();
  script->removal_errors[1] = caf::make_error(
    errc::runner_busy, "delete_runner: 422 Bad request - Runner \"linux-i-a\" is "
                    "still running a job");
  script->removal_errors[3] = caf::make_error(errc::not_found,
                                              "delete_runner: 404 Not Found");
  script->removal_errors[4] = caf::make_error(errc::backend_failure,
                                              "delete_runner: 502");
  always(pool_view{{runner("i-a", runner_state::ready, t - 40min, 1),
                    runner("i-b", runner_state::ready, t - 30min, 2),
                    runner("i-c", runner_state::ready, t - 20min, 3),
                    runner("i-d", runner_state::ready, t - 20min, 4)},
                   {}});
  auto r = spawn_reaper();
  auto report = reap(r);
  EXPECT_EQ(script->removals.size(), 4u);
  // 404: the registration was already gone, so the instance goes too.
  EXPECT_EQ(terminated(), (std::vector<std::string>{"i-b", "i-c"}));
  EXPECT_EQ(report.kept_busy, 1);
  EXPECT_EQ(report.idle_retired, 2);
  EXPECT_EQ(report.errors, 1); // the 502: left for the next pass
  EXPECT_EQ(report.api_calls, 6); // describe, 4 unregisters, terminate
}

TEST_F(reaper_test, OrphanTaggedOnePassAndTerminatedTheNext) {
  auto t = clock_now();
  script->instances = {instance("i-orphan", org, 7), instance("i-booting", org, 7)};
  auto orphan = runner("i-orphan", runner_state::pending, t - 10min, 0);
  auto booting = runner("i-booting", runner_state::pending, t - 2min, 0);
  script->view = [=](const pool_inventory&, size_t index) {
    auto tagged = orphan;
    tagged.orphan_tagged = index > 0;
    return pool_view{{tagged, booting}, {}};
  };
  log_capture logs;
  auto r = spawn_reaper();
  auto first = reap(r);
  ASSERT_EQ(script->tag_calls.size(), 1u);
  EXPECT_EQ(script->tag_calls[0].ids, std::vector<std::string>{"i-orphan"});
  ASSERT_EQ(script->tag_calls[0].tags.size(), 1u);
  EXPECT_EQ(script->tag_calls[0].tags[0].key, "ghscale:orphan");
  EXPECT_EQ(script->tag_calls[0].tags[0].value, "true");
  EXPECT_TRUE(script->terminate_calls.empty());
  EXPECT_EQ(first.orphans_tagged, 1);
  EXPECT_EQ(first.orphans_terminated, 0);
  auto second = reap(r);
  EXPECT_EQ(script->tag_calls.size(), 1u);
  EXPECT_EQ(terminated(), std::vector<std::string>{"i-orphan"});
  EXPECT_EQ(script->ledger_terminated,
            std::vector<std::vector<std::string>>{{"i-orphan"}});
  EXPECT_EQ(second.orphans_terminated, 1);
  EXPECT_EQ(second.orphans_tagged, 0);
  EXPECT_EQ(log_capture::lines_containing("reaper tagged orphan instance"), 1u);
  EXPECT_EQ(log_capture::lines_containing("reaper terminated orphan instance"), 1u);
}

TEST_F(reaper_test, TaggedOrphanThatRegisteredMeanwhileIsKept) {
  auto t = clock_now();
  script->instances = {instance("i-late", org, 7)};
  auto late = runner("i-late", runner_state::ready, t - 10min, 55);
  late.orphan_tagged = true;
  pool.min_idle = 1; // keeps it as idle capacity too
  always(pool_view{{late}, {}});
  auto r = spawn_reaper();
  auto report = reap(r);
  EXPECT_TRUE(script->terminate_calls.empty());
  EXPECT_TRUE(script->tag_calls.empty());
  EXPECT_EQ(report.orphans_terminated, 0);
}

TEST_F(reaper_test, OrphansNeedAKnownTargetAndALiveInstance) {
  auto t = clock_now();
  auto stopping = instance("i-stopping", org, 7);
  stopping.state = instance_state::shutting_down;
  script->instances = {instance("i-untargeted", org, 7), stopping};
  auto untargeted = runner("i-untargeted", runner_state::pending, t - 10min, 0);
  untargeted.target = {};
  untargeted.installation_id = 0;
  auto leaving = runner("i-stopping", runner_state::pending, t - 10min, 0);
  auto vanished = runner("i-vanished", runner_state::pending, t - 10min, 0);
  always(pool_view{{untargeted, leaving, vanished}, {}});
  auto r = spawn_reaper();
  auto report = reap(r);
  EXPECT_TRUE(script->tag_calls.empty());
  EXPECT_EQ(report.orphans_tagged, 0);
}

TEST_F(reaper_test, GhostRegistrationsAreDeleted) {
  registration_seen ghost{{41, "linux-i-dead", "offline", false, {}}, user_repo, 9};
  registration_seen gone{{42, "linux-i-gone", "offline", false, {}}, org, 7};
  script->removal_errors[42] = caf::make_error(errc::not_found, "delete_runner: 404");
  always(pool_view{{}, {ghost, gone}});
  log_capture logs;
  auto r = spawn_reaper();
  auto report = reap(r);
  ASSERT_EQ(script->removals.size(), 2u);
  EXPECT_EQ(script->removals[0].runner_id, 41);
  EXPECT_EQ(script->removals[0].target, user_repo);
  EXPECT_EQ(script->client_lookups, (std::vector<int64_t>{9, 7}));
  EXPECT_EQ(report.ghosts_deleted, 2); // 404: already deleted
  EXPECT_TRUE(script->terminate_calls.empty());
  EXPECT_EQ(log_capture::lines_containing("reaper deleted ghost registration"), 2u);
}

TEST_F(reaper_test, AtMostTwentyFourGitHubCallsAreInFlight) {
  pool_view view;
  for (int64_t id = 1; id <= 30; ++id)
    view.ghosts.push_back({{id, "linux-i-" + std::to_string(id), "offline", false, {}},
                           org, 7});
  always(view);
  script->hold_removals = true;
  auto r = spawn_reaper();
  auto answer = spawn_requester<reap_report>(r, 1h, atom::reap_v);
  sched.run();
  EXPECT_EQ(script->held.size(), 24u);
  self->send(client, atom::flush_v);
  sched.run();
  EXPECT_EQ(script->held.size(), 6u);
  EXPECT_FALSE(answer->has_value());
  self->send(client, atom::flush_v);
  sched.run();
  ASSERT_TRUE(answer->has_value() && **answer);
  EXPECT_EQ((**answer)->ghosts_deleted, 30);
  EXPECT_EQ((**answer)->api_calls, 31);
}

TEST_F(reaper_test, BypassTagLeavesTheInstanceAlone) {
  auto t = clock_now();
  script->instances = {instance("i-idle", org, 7), instance("i-orphan", org, 7)};
  auto idle = runner("i-idle", runner_state::ready, t - 40min, 1);
  idle.bypass_removal = true;
  auto orphan = runner("i-orphan", runner_state::pending, t - 40min, 0);
  orphan.bypass_removal = true;
  orphan.orphan_tagged = true;
  always(pool_view{{idle, orphan}, {}});
  auto r = spawn_reaper();
  auto report = reap(r);
  EXPECT_TRUE(script->removals.empty());
  EXPECT_TRUE(script->tag_calls.empty());
  EXPECT_TRUE(script->terminate_calls.empty());
  EXPECT_EQ(report.bypassed, 2);
  EXPECT_EQ(report.idle_retired + report.orphans_terminated, 0);
}

TEST_F(reaper_test, IncompleteListingMakesNoOrphans) {
  auto t = clock_now();
  script->instances = {instance("i-1", org, 7), instance("i-2", user_repo, 9)};
  script->failing_target = "alice/tools";
  auto tagged = runner("i-1", runner_state::pending, t - 40min, 0);
  tagged.orphan_tagged = true;
  auto untagged = runner("i-2", runner_state::pending, t - 40min, 0);
  always(pool_view{{tagged, untagged}, {}});
  auto r = spawn_reaper();
  auto report = reap(r);
  ASSERT_EQ(script->inventories.size(), 1u);
  EXPECT_FALSE(script->inventories[0].registrations_complete);
  EXPECT_TRUE(script->tag_calls.empty());
  EXPECT_TRUE(script->terminate_calls.empty());
  EXPECT_EQ(report.errors, 1);
  EXPECT_EQ(report.api_calls, 3); // describe + two listings (one failed)
  EXPECT_EQ(stats->count("ghscale_reaper_errors_total", {{"pool", "linux"}}), 1);
}

TEST_F(reaper_test, ApiCallsAreCountedExactly) {
  auto t = clock_now();
  script->instances = {instance("i-idle1", org, 7), instance("i-idle2", org, 7),
                       instance("i-new-orphan", user_repo, 9),
                       instance("i-old-orphan", org, 7)};
  auto old_orphan = runner("i-old-orphan", runner_state::pending, t - 40min, 0);
  old_orphan.orphan_tagged = true;
  registration_seen ghost{{77, "linux-i-dead", "offline", false, {}}, org, 7};
  always(pool_view{{runner("i-idle1", runner_state::ready, t - 40min, 1),
                    runner("i-idle2", runner_state::ready, t - 30min, 2),
                    runner("i-new-orphan", runner_state::pending, t - 40min, 0),
                    old_orphan},
                   {ghost}});
  auto r = spawn_reaper();
  auto report = reap(r);
  // describe 1 + list 2 targets + unregister 2 idle + 1 ghost + add_tags 1
  // + one batched terminate 1.
  EXPECT_EQ(report.api_calls, 8);
  EXPECT_EQ(report.errors, 0);
  EXPECT_EQ(report.idle_retired, 2);
  EXPECT_EQ(report.orphans_tagged, 1);
  EXPECT_EQ(report.orphans_terminated, 1);
  EXPECT_EQ(report.ghosts_deleted, 1);
  ASSERT_EQ(script->terminate_calls.size(), 1u);
  EXPECT_EQ(terminated(),
            (std::vector<std::string>{"i-idle1", "i-idle2", "i-old-orphan"}));
  EXPECT_EQ(stats->count("ghscale_reaper_api_calls_total", {{"pool", "linux"}}), 8);
  EXPECT_EQ(stats->gauge("ghscale_reaper_last_pass_api_calls", {{"pool", "linux"}}), 8);
  EXPECT_EQ(stats->total("ghscale_reaper_actions_total"), 5);
  reap(r); // same world: the gauge shows the last pass, the counter sums
  EXPECT_EQ(stats->count("ghscale_reaper_api_calls_total", {{"pool", "linux"}}), 16);
  EXPECT_EQ(stats->gauge("ghscale_reaper_last_pass_api_calls", {{"pool", "linux"}}), 8);
}

TEST_F(reaper_test, OverlappingReapRequestsShareAPass) {
  auto t = clock_now();
  always(pool_view{{runner("i-a", runner_state::ready, t - 40min, 1)}, {}});
  auto r = spawn_reaper();
  auto first = spawn_requester<reap_report>(r, 1min, atom::reap_v);
  auto second = spawn_requester<reap_report>(r, 1min, atom::reap_v);
  sched.run();
  ASSERT_TRUE(first->has_value() && second->has_value());
  ASSERT_TRUE(**first && **second);
  EXPECT_EQ(script->describes.size(), 1u);
  EXPECT_EQ(script->terminate_calls.size(), 1u);
  EXPECT_EQ((**first)->idle_retired, 1);
  EXPECT_EQ((**second)->idle_retired, 1);
  auto third = reap(r); // after the pass: a new one
  EXPECT_EQ(script->describes.size(), 2u);
  EXPECT_EQ((**first)->api_calls, 3); // describe, unregister, terminate
  // The first pass's view named a target: listed from now on.
  EXPECT_EQ(third.api_calls, 4);
}

TEST_F(reaper_test, PassesRunOnTheirPeriodFromOneIntervalAfterStart) {
  auto r = spawn_reaper();
  sched.run();
  EXPECT_TRUE(script->describes.empty());
  advance(59s);
  EXPECT_TRUE(script->describes.empty());
  advance(1s);
  EXPECT_EQ(script->describes.size(), 1u);
  advance(1min);
  EXPECT_EQ(script->describes.size(), 2u);
}

TEST_F(reaper_test, FailedDescribeEndsThePassWithAnError) {
  ec2 = sys.spawn(silent_ec2, script);
  auto r = spawn_reaper();
  auto answer = spawn_requester<reap_report>(r, 1h, atom::reap_v);
  advance(timeouts.aws_call - 1s);
  EXPECT_FALSE(answer->has_value());
  advance(1s);
  ASSERT_TRUE(answer->has_value() && **answer);
  EXPECT_EQ((**answer)->errors, 1);
  EXPECT_EQ((**answer)->api_calls, 1);
  EXPECT_EQ(script->describes.size(), 1u);
  EXPECT_TRUE(script->inventories.empty());
}
