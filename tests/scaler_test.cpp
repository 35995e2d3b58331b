// The scaler with a real ledger, behind mocks of EC2, the fleet launcher and
// GitHub, in virtual time.
#include "actors/runner_ledger.hpp"
#include "actors/scaler.hpp"
#include "tests/actor_test.hpp"
#include "tests/installation_client_mock.hpp"
#include "transport/workflow_job.hpp"

#include <functional>
#include <map>
#include <memory>
#include <utility>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

/// EC2 for the ledger's reconciliation: no instances, or no answer at all.
ec2_actor spawn_ec2(caf::actor_system& sys, bool answers) {
  // Collaborators are spawn arguments, as CAF 0.17.6 trips UBSan on a
  // function actor spawned without any.
  return sys.spawn([](ec2_actor::pointer self, bool answers) -> ec2_actor::behavior_type {
    auto held = std::make_shared<std::vector<caf::typed_response_promise<instance_list>>>();
    return {
      [](atom::fleet, const fleet_request&) -> caf::result<fleet_result> {
        return caf::make_error(errc::rejected, "not scripted");
      },
      [=](atom::describe, const instance_filter&) -> caf::result<instance_list> {
        if (answers)
          return instance_list{};
        held->push_back(self->make_response_promise<instance_list>());
        return held->back();
      },
      [](atom::terminate, const instance_ids&) { return batch_result{}; },
      [](atom::add_tags, const instance_tags&) { return batch_result{}; },
    };
  }, answers);
}

/// What the fleet launcher mock saw, and how it answers.
struct launcher_script {
  std::vector<launch_request> calls;
  /// Keep launches open until the test answers them (`answer_held`).
  bool hold = false;
  std::vector<std::pair<caf::typed_response_promise<launch_result>, launch_request>>
    held;
  std::function<caf::expected<launch_result>(const launch_request&)> answer
    = [](const launch_request& req) {
        launch_result out;
        for (size_t i = 0; i < req.runners.size(); ++i) {
          launched_runner r;
          r.spec_index = static_cast<int32_t>(i);
          r.job = req.runners[i].job;
          r.instance_id = "i-" + req.client_token + "-" + std::to_string(i);
          r.runner_name = "linux-" + r.instance_id;
          out.launched.push_back(r);
        }
        return caf::expected<launch_result>{std::move(out)};
      };
};

fleet_launcher_actor spawn_launcher(caf::actor_system& sys,
                                    std::shared_ptr<launcher_script> script) {
  return sys.spawn([](fleet_launcher_actor::pointer self,
                      std::shared_ptr<launcher_script> script)
                     -> fleet_launcher_actor::behavior_type {
    return {
      [=](atom::launch, const launch_request& req) -> caf::result<launch_result> {
        script->calls.push_back(req);
        if (script->hold) {
          script->held.emplace_back(self->make_response_promise<launch_result>(), req);
          return script->held.back().first;
        }
        auto answer = script->answer(req);
        if (!answer)
          return answer.error();
        return *answer;
      },
      [](atom::terminate, const instance_ids&) { return batch_result{}; },
      // Answers every launch held open so far, as `answer` would.
      [=](atom::flush, uint64_t) {
        for (auto& [promise, req] : std::exchange(script->held, {})) {
          auto result = script->answer(req);
          if (result)
            promise.deliver(*result);
          else
            promise.deliver(result.error());
        }
      },
    };
  }, std::move(script));
}

/// GitHub: the installation client's script plus what the App was asked.
struct github_script : test::installation_script {
  std::vector<int64_t> client_asks;
  std::map<std::string, int64_t> installations; // by target, for lookups
  std::vector<std::string> lookups;
};

github_app_actor spawn_github(caf::actor_system& sys,
                              std::shared_ptr<github_script> script,
                              installation_client_actor client) {
  return sys.spawn([](std::shared_ptr<github_script> script,
                      installation_client_actor client)
                     -> github_app_actor::behavior_type {
    return {
      [=](atom::client, int64_t installation) {
        script->client_asks.push_back(installation);
        return client;
      },
      [=](atom::lookup, const repository_ref& target) -> caf::result<int64_t> {
        script->lookups.push_back(target.full_name());
        auto i = script->installations.find(target.full_name());
        if (i == script->installations.end())
          return caf::make_error(errc::not_found, "no installation for " + target.full_name());
        return i->second;
      },
      [](atom::drain, caf::timespan) { return true; },
      [](atom::mint, int64_t) -> caf::result<github_response> {
        return caf::make_error(errc::rejected, "not scripted");
      },
    };
  }, std::move(script), std::move(client));
}

/// The pool's queue: what a drain puts back on it.
queue_actor spawn_queue(caf::actor_system& sys,
                        std::shared_ptr<std::vector<outgoing_message>> enqueued) {
  return sys.spawn([](std::shared_ptr<std::vector<outgoing_message>> enqueued)
                     -> queue_actor::behavior_type {
    return {
      [](atom::receive, const receive_request&) { return received_batch{}; },
      [](atom::remove, const std::vector<std::string>&) { return batch_result{}; },
      [](atom::visibility, const std::vector<visibility_change>&) {
        return batch_result{};
      },
      [=](atom::enqueue, const std::vector<outgoing_message>& msgs) {
        batch_result out;
        for (auto& m : msgs) {
          out.succeeded.push_back(std::to_string(enqueued->size()));
          enqueued->push_back(m);
        }
        return out;
      },
      [](atom::depth) { return queue_depth{}; },
    };
  }, std::move(enqueued));
}

/// Job retry: the re-checks it was asked for.
job_retry_actor spawn_job_retry(caf::actor_system& sys,
                                std::shared_ptr<std::vector<recheck>> seen) {
  return sys.spawn([](std::shared_ptr<std::vector<recheck>> seen)
                     -> job_retry_actor::behavior_type {
    return {
      [=](atom::recheck, const recheck& r) { seen->push_back(r); },
      [](atom::tick, uint64_t) {},
    };
  }, std::move(seen));
}

pending_job pj(std::string receipt, int64_t job_id, int32_t receive_count = 1) {
  pending_job out;
  out.receipt = std::move(receipt);
  out.receive_count = receive_count;
  out.event.action = job_action::queued;
  out.event.key = job_key{job_id, 1};
  out.event.repository = repository_ref{"octo", "hello", owner_type::organization};
  out.event.installation_id = 7;
  out.event.labels = {"self-hosted", "linux"};
  return out;
}

class ScalerTest : public test::actor_test {
protected:
  ScalerTest() {
    pool.name = "linux";
    pool.max_runners = 10;
    pool.min_idle = 0;
    retry = retry_config{5s, 15min, 0.0};
  }

  void start(bool ledger_ready = true) {
    // A mock holding a request open keeps itself alive: stop everyone.
    auto ec2 = stop_at_teardown(spawn_ec2(sys, ledger_ready));
    ledger = stop_at_teardown(
      sys.spawn(runner_ledger, pool, timeouts_config{}, ec2, stats));
    auto client = stop_at_teardown(test::spawn_installation_client(sys, github));
    auto app = stop_at_teardown(spawn_github(sys, github, client));
    fleet = stop_at_teardown(spawn_launcher(sys, launcher));
    auto retries = stop_at_teardown(spawn_job_retry(sys, rechecks));
    queue_handle = stop_at_teardown(spawn_queue(sys, enqueued));
    scaler_handle = stop_at_teardown(sys.spawn(scaler, pool, window, retry,
                                               timeouts_config{}, ledger, fleet,
                                               app, retries, queue_handle, stats, 1));
    sched.run();
  }

  void scale(std::vector<pending_job> jobs) {
    self->send(scaler_handle, atom::scale_v, scale_request{std::move(jobs)});
    sched.run();
  }

  /// Closes the open window and returns the next answer.
  batch_outcome decide() {
    sched.advance_time(window.window);
    sched.run();
    return expect_reply<batch_outcome>();
  }

  ledger_counts counts() { return ask<ledger_counts>(ledger, atom::counts_v); }

  void lose_job_ones_runner();

  /// The launcher mock answers the launches it holds open.
  void answer_held() { self->send(fleet, atom::flush_v, uint64_t{0}); }

  metrics_ptr stats = std::make_shared<metrics>();
  pool_config pool;
  scaler_config window;
  retry_config retry;
  std::shared_ptr<launcher_script> launcher = std::make_shared<launcher_script>();
  std::shared_ptr<github_script> github = std::make_shared<github_script>();
  std::shared_ptr<std::vector<recheck>> rechecks
    = std::make_shared<std::vector<recheck>>();
  runner_ledger_actor ledger;
  fleet_launcher_actor fleet;
  queue_actor queue_handle;
  std::shared_ptr<std::vector<outgoing_message>> enqueued
    = std::make_shared<std::vector<outgoing_message>>();
  scaler_actor scaler_handle;
};

void expect_outcome(const message_outcome& o, const std::string& receipt,
                    outcome_kind kind, const std::string& reason) {
  EXPECT_EQ(o.receipt, receipt);
  EXPECT_EQ(o.kind, kind) << o.reason;
  EXPECT_EQ(o.reason, reason);
}

} // namespace

TEST_F(ScalerTest, BatchesAWindowIntoOneLaunch) {
  start();
  scale({pj("r1", 1)});
  scale({pj("r2", 2)});
  EXPECT_TRUE(launcher->calls.empty()); // the window is still open
  auto first = decide();
  auto second = expect_reply<batch_outcome>();
  ASSERT_EQ(launcher->calls.size(), 1u);
  auto& call = launcher->calls[0];
  ASSERT_EQ(call.runners.size(), 2u);
  EXPECT_EQ(call.runners[0].job, (job_key{1, 1}));
  EXPECT_EQ(call.runners[1].job, (job_key{2, 1}));
  EXPECT_EQ(call.runners[0].installation_id, 7);
  // An org-level pool registers its runners at the organization.
  EXPECT_EQ(call.runners[0].target,
            (repository_ref{"octo", "", owner_type::organization}));
  ASSERT_EQ(first.outcomes.size(), 1u);
  ASSERT_EQ(second.outcomes.size(), 1u);
  expect_outcome(first.outcomes[0], "r1", outcome_kind::done, "runner configured");
  expect_outcome(second.outcomes[0], "r2", outcome_kind::done, "runner configured");
  EXPECT_EQ(counts().pending, 2);
  EXPECT_EQ(stats->count("ghscale_scaler_decisions_total", {{"pool", "linux"}}), 1);
  EXPECT_EQ(stats->count("ghscale_jobs_total",
                         {{"pool", "linux"}, {"outcome", "launched"}}),
            2);
}

TEST_F(ScalerTest, ClosesTheWindowEarlyAtMaxBatch) {
  window.max_batch = 2;
  start();
  scale({pj("r1", 1), pj("r2", 2)});
  EXPECT_EQ(launcher->calls.size(), 1u);
  EXPECT_EQ(expect_reply<batch_outcome>().outcomes.size(), 2u);
}

TEST_F(ScalerTest, DecidesAtOnceWithAZeroWindow) {
  window.window = 0s;
  start();
  scale({pj("r1", 1)});
  EXPECT_EQ(launcher->calls.size(), 1u);
  EXPECT_EQ(expect_reply<batch_outcome>().outcomes.size(), 1u);
}

TEST_F(ScalerTest, DuplicatesGetTheirPrimarysOutcome) {
  start();
  scale({pj("r1", 1), pj("r1-copy", 1, 3)});
  scale({pj("r1-again", 1)});
  auto first = decide();
  auto second = expect_reply<batch_outcome>();
  ASSERT_EQ(launcher->calls.size(), 1u);
  EXPECT_EQ(launcher->calls[0].runners.size(), 1u);
  ASSERT_EQ(first.outcomes.size(), 2u);
  expect_outcome(first.outcomes[0], "r1", outcome_kind::done, "runner configured");
  expect_outcome(first.outcomes[1], "r1-copy", outcome_kind::done,
                 "runner configured");
  ASSERT_EQ(second.outcomes.size(), 1u);
  expect_outcome(second.outcomes[0], "r1-again", outcome_kind::done,
                 "runner configured");
  EXPECT_EQ(stats->count("ghscale_duplicates_suppressed_total", {{"pool", "linux"}}),
            2);
}

TEST_F(ScalerTest, DuplicatesOfARetriedJobRetryWithTheirOwnDelay) {
  launcher->answer = [](const launch_request&) -> caf::expected<launch_result> {
    return caf::make_error(errc::throttled, "CreateFleet");
  };
  start();
  scale({pj("r1", 1, 1), pj("r1-copy", 1, 3)});
  auto out = decide();
  ASSERT_EQ(out.outcomes.size(), 2u);
  EXPECT_EQ(out.outcomes[0].kind, outcome_kind::retry);
  EXPECT_EQ(out.outcomes[1].kind, outcome_kind::retry);
  EXPECT_EQ(out.outcomes[0].delay, caf::timespan{5s});
  EXPECT_EQ(out.outcomes[1].delay, caf::timespan{20s});
}

// A job GitHub answers 404 for (deleted, or in a repository the App lost)
// cannot be served by retrying: it is settled without a runner, unless it
// was queued so recently that GitHub's API may not show it yet.
TEST_F(ScalerTest, SettlesAJobGitHubDoesNotKnowUnlessItIsNew) {
  github->statuses.emplace(1, caf::make_error(errc::not_found, "GET job"));
  github->statuses.emplace(2, caf::make_error(errc::not_found, "GET job"));
  start();
  advance(10min);
  auto old_job = pj("r1", 1);
  old_job.sent_at = sched.clock().now().time_since_epoch() - 5min;
  auto new_job = pj("r2", 2);
  new_job.sent_at = sched.clock().now().time_since_epoch() - 10s;
  scale({old_job, new_job});
  auto out = decide();
  ASSERT_EQ(out.outcomes.size(), 2u);
  expect_outcome(out.outcomes[0], "r1", outcome_kind::done,
                 "job not found (deleted, or the App cannot see it)");
  EXPECT_EQ(out.outcomes[1].kind, outcome_kind::retry);
  EXPECT_NE(out.outcomes[1].reason.find("not_found"), std::string::npos)
    << out.outcomes[1].reason;
  EXPECT_TRUE(launcher->calls.empty());
  EXPECT_EQ(counts().active(), 0);
}

TEST_F(ScalerTest, AcksJobsNoLongerQueuedWithoutLaunching) {
  github->statuses.emplace(1, std::string{"completed"});
  github->statuses.emplace(2, std::string{"in_progress"});
  start();
  scale({pj("r1", 1), pj("r2", 2)});
  auto out = decide();
  EXPECT_TRUE(launcher->calls.empty());
  ASSERT_EQ(out.outcomes.size(), 2u);
  expect_outcome(out.outcomes[0], "r1", outcome_kind::done, "job no longer queued");
  expect_outcome(out.outcomes[1], "r2", outcome_kind::done, "job no longer queued");
  ASSERT_EQ(github->queries.size(), 2u);
  EXPECT_EQ(github->queries[0].repository,
            (repository_ref{"octo", "hello", owner_type::organization}));
  EXPECT_EQ(counts().active(), 0);
}

TEST_F(ScalerTest, RetriesJobsWhoseCheckFailed) {
  github->statuses.emplace(1, caf::make_error(errc::backend_failure, "GET job: 502"));
  start();
  scale({pj("r1", 1), pj("r2", 2)});
  auto out = decide();
  ASSERT_EQ(out.outcomes.size(), 2u);
  EXPECT_EQ(out.outcomes[0].kind, outcome_kind::retry);
  EXPECT_NE(out.outcomes[0].reason.find("backend_failure"), std::string::npos)
    << out.outcomes[0].reason;
  expect_outcome(out.outcomes[1], "r2", outcome_kind::done, "runner configured");
  ASSERT_EQ(launcher->calls.size(), 1u);
  EXPECT_EQ(launcher->calls[0].runners.size(), 1u);
}

TEST_F(ScalerTest, AsksTheAppForAnInstallationClientOnce) {
  start();
  scale({pj("r1", 1)});
  decide();
  scale({pj("r2", 2)});
  decide();
  EXPECT_EQ(github->client_asks, std::vector<int64_t>{7});
  EXPECT_EQ(github->queries.size(), 2u);
}

TEST_F(ScalerTest, LooksUpTheInstallationOfEventsThatCarryNone) {
  github->installations["octo"] = 7;
  start();
  auto a = pj("r1", 1);
  auto b = pj("r2", 2);
  a.event.installation_id = b.event.installation_id = 0;
  scale({a, b});
  auto out = decide();
  expect_outcome(out.outcomes.at(0), "r1", outcome_kind::done, "runner configured");
  expect_outcome(out.outcomes.at(1), "r2", outcome_kind::done, "runner configured");
  // One lookup for the org both jobs' runners register at.
  EXPECT_EQ(github->lookups, std::vector<std::string>{"octo"});
  ASSERT_EQ(launcher->calls.size(), 1u);
  for (auto& runner : launcher->calls[0].runners)
    EXPECT_EQ(runner.installation_id, 7);
}

TEST_F(ScalerTest, RetriesJobsWhoseInstallationIsUnknown) {
  start();
  auto a = pj("r1", 1);
  a.event.installation_id = 0;
  scale({a, pj("r2", 2)});
  auto out = decide();
  EXPECT_EQ(out.outcomes.at(0).kind, outcome_kind::retry);
  EXPECT_NE(out.outcomes.at(0).reason.find("no installation for octo"), std::string::npos)
    << out.outcomes.at(0).reason;
  expect_outcome(out.outcomes.at(1), "r2", outcome_kind::done, "runner configured");
  ASSERT_EQ(launcher->calls.size(), 1u);
  EXPECT_EQ(launcher->calls[0].runners.size(), 1u);
}

TEST_F(ScalerTest, SkipsTheJobCheckWhenTheConfigSaysSo) {
  pool.job_queued_check = false;
  github->statuses.emplace(1, std::string{"completed"});
  start();
  scale({pj("r1", 1)});
  expect_outcome(decide().outcomes.at(0), "r1", outcome_kind::done,
                 "runner configured");
  EXPECT_TRUE(github->queries.empty());
}

TEST_F(ScalerTest, PartialFillRetriesExactlyTheFailedJobs) {
  launcher->answer = [](const launch_request& req) {
    launch_result out;
    for (int32_t i : {0, 2}) {
      launched_runner r;
      r.spec_index = i;
      r.job = req.runners[static_cast<size_t>(i)].job;
      r.instance_id = "i-" + std::to_string(i);
      out.launched.push_back(r);
    }
    out.failed.push_back(launch_failure{1, req.runners[1].job,
                                        "InsufficientInstanceCapacity", "none left"});
    return caf::expected<launch_result>{std::move(out)};
  };
  start();
  scale({pj("r1", 1), pj("r2", 2), pj("r3", 3)});
  auto out = decide();
  ASSERT_EQ(out.outcomes.size(), 3u);
  expect_outcome(out.outcomes[0], "r1", outcome_kind::done, "runner configured");
  expect_outcome(out.outcomes[1], "r2", outcome_kind::retry,
                 "InsufficientInstanceCapacity");
  expect_outcome(out.outcomes[2], "r3", outcome_kind::done, "runner configured");
  auto c = counts();
  EXPECT_EQ(c.pending, 2);
  EXPECT_EQ(c.requested, 0);
  EXPECT_EQ(stats->count("ghscale_jobs_total",
                         {{"pool", "linux"}, {"outcome", "launch_failed"}}),
            1);
}

TEST_F(ScalerTest, LaunchErrorRetriesEverythingAndReleasesTheReservation) {
  launcher->answer = [](const launch_request&) -> caf::expected<launch_result> {
    return caf::make_error(caf::sec::request_timeout);
  };
  start();
  scale({pj("r1", 1)});
  scale({pj("r2", 2)});
  auto first = decide();
  auto second = expect_reply<batch_outcome>();
  EXPECT_EQ(first.outcomes.at(0).kind, outcome_kind::retry);
  EXPECT_EQ(second.outcomes.at(0).kind, outcome_kind::retry);
  EXPECT_EQ(counts().active(), 0);
  // The jobs were forgotten: the retry may launch for them.
  launcher->answer = launcher_script{}.answer;
  scale({pj("r1", 1, 2), pj("r2", 2, 2)});
  auto retried = decide();
  EXPECT_EQ(retried.outcomes.at(0).kind, outcome_kind::done);
  EXPECT_EQ(retried.outcomes.at(1).kind, outcome_kind::done);
}

TEST_F(ScalerTest, EphemeralPoolOverCapRetries) {
  pool.max_runners = 1;
  start();
  scale({pj("r1", 1), pj("r2", 2)});
  auto out = decide();
  ASSERT_EQ(out.outcomes.size(), 2u);
  expect_outcome(out.outcomes[0], "r1", outcome_kind::done, "runner configured");
  expect_outcome(out.outcomes[1], "r2", outcome_kind::retry, "pool at capacity");
  EXPECT_EQ(out.outcomes[1].delay, caf::timespan{5s});
}

TEST_F(ScalerTest, ReusablePoolOverCapAcks) {
  pool.max_runners = 1;
  pool.mode = runner_mode::reusable;
  start();
  scale({pj("r1", 1), pj("r2", 2)});
  auto out = decide();
  ASSERT_EQ(out.outcomes.size(), 2u);
  expect_outcome(out.outcomes[1], "r2", outcome_kind::done,
                 "reusable pool at capacity; a busy runner will take it");
}

TEST_F(ScalerTest, AcksJobsThatAlreadyHaveARunner) {
  start();
  scale({pj("r1", 1)});
  decide();
  scale({pj("r1-redelivered", 1, 2)});
  expect_outcome(decide().outcomes.at(0), "r1-redelivered", outcome_kind::done,
                 "runner already configured");
  EXPECT_EQ(launcher->calls.size(), 1u);
}

TEST_F(ScalerTest, LedgerNotReadyRetriesEveryMessage) {
  start(false);
  scale({pj("r1", 1, 1), pj("r2", 2, 3)});
  auto out = decide();
  EXPECT_TRUE(launcher->calls.empty());
  ASSERT_EQ(out.outcomes.size(), 2u);
  for (auto& o : out.outcomes) {
    EXPECT_EQ(o.kind, outcome_kind::retry);
    EXPECT_NE(o.reason.find("not_ready"), std::string::npos) << o.reason;
  }
  // The retry delay grows with the receive count.
  EXPECT_EQ(out.outcomes[0].delay, caf::timespan{5s});
  EXPECT_EQ(out.outcomes[1].delay, caf::timespan{20s});
}

TEST_F(ScalerTest, ClientTokenNamesPoolAndReservation) {
  start();
  scale({pj("r1", 1)});
  decide();
  scale({pj("r2", 2)});
  decide();
  ASSERT_EQ(launcher->calls.size(), 2u);
  auto id_of = [](const std::string& token) {
    EXPECT_EQ(token.rfind("linux-", 0), 0u) << token;
    return std::stoull(token.substr(6));
  };
  auto first = id_of(launcher->calls[0].client_token);
  EXPECT_EQ(id_of(launcher->calls[1].client_token), first + 1);
  EXPECT_EQ(launcher->calls[0].pool, "linux");
  // The ledger accepted both reports under these ids.
  EXPECT_EQ(counts().pending, 2);
}

TEST_F(ScalerTest, TopsUpIdleRunnersWithTheFirstJobsTarget) {
  pool.min_idle = 1;
  pool.org_level = false;
  start();
  scale({pj("r1", 1)});
  expect_outcome(decide().outcomes.at(0), "r1", outcome_kind::done,
                 "runner configured");
  ASSERT_EQ(launcher->calls.size(), 1u);
  auto& runners = launcher->calls[0].runners;
  ASSERT_EQ(runners.size(), 2u);
  EXPECT_EQ(runners[1].job.job_id, 0);
  EXPECT_EQ(runners[1].target,
            (repository_ref{"octo", "hello", owner_type::organization}));
  EXPECT_EQ(runners[1].installation_id, 7);
  EXPECT_EQ(counts().pending, 2);
}

TEST_F(ScalerTest, SpotInterruptionDeregistersAndLaunchesAnOnDemandReplacement) {
  start();
  auto default_answer = launcher->answer;
  launcher->answer = [=](const launch_request& req) {
    auto out = default_answer(req);
    for (auto& r : out->launched)
      r.runner_id = 55;
    return out;
  };
  scale({pj("r1", 1)});
  decide();
  ASSERT_EQ(launcher->calls.size(), 1u);
  auto instance = "i-" + launcher->calls[0].client_token + "-0";
  self->send(scaler_handle, atom::interrupt_v, instance);
  sched.run();
  EXPECT_TRUE(expect_reply<bool>());
  ASSERT_EQ(github->removals.size(), 1u);
  EXPECT_EQ(github->removals[0].runner_id, 55);
  EXPECT_EQ(github->removals[0].target,
            (repository_ref{"octo", "", owner_type::organization}));
  ASSERT_EQ(launcher->calls.size(), 2u);
  auto& replacement = launcher->calls[1];
  EXPECT_TRUE(replacement.on_demand);
  ASSERT_EQ(replacement.runners.size(), 1u);
  EXPECT_EQ(replacement.runners[0].job, (job_key{1, 1}));
  EXPECT_EQ(counts().pending, 2);
  // An instance that is not this pool's is answered false, untouched.
  self->send(scaler_handle, atom::interrupt_v, std::string{"i-other"});
  sched.run();
  EXPECT_FALSE(expect_reply<bool>());
  EXPECT_EQ(launcher->calls.size(), 2u);
}

TEST_F(ScalerTest, ReusablePoolsHaveAckedJobsRechecked) {
  pool.mode = runner_mode::reusable;
  pool.max_runners = 1;
  start();
  scale({pj("r1", 1), pj("r2", 2)});
  auto out = decide();
  ASSERT_EQ(out.outcomes.size(), 2u);
  expect_outcome(out.outcomes[0], "r1", outcome_kind::done, "runner configured");
  expect_outcome(out.outcomes[1], "r2", outcome_kind::done,
                 "reusable pool at capacity; a busy runner will take it");
  ASSERT_EQ(rechecks->size(), 2u);
  EXPECT_EQ((*rechecks)[0].pool, "linux");
  EXPECT_EQ((*rechecks)[0].event.key, (job_key{1, 1}));
  EXPECT_EQ((*rechecks)[1].event.key, (job_key{2, 1}));
}

TEST_F(ScalerTest, EphemeralPoolsKeepOverCapJobsOnTheQueueInsteadOfRechecks) {
  pool.max_runners = 1;
  start();
  scale({pj("r1", 1), pj("r2", 2)});
  auto out = decide();
  ASSERT_EQ(out.outcomes.size(), 2u);
  EXPECT_EQ(out.outcomes[1].kind, outcome_kind::retry);
  EXPECT_TRUE(rechecks->empty());
}

// -- a job is served once its runner is configured ------------------------------------


TEST_F(ScalerTest, ACopyOfAJobInFlightIsNeitherAckedNorLaunched) {
  launcher->hold = true;
  start();
  scale({pj("r1", 1)});
  sched.advance_time(window.window);
  sched.run();
  ASSERT_EQ(launcher->calls.size(), 1u); // launching, not configured yet
  // Another delivery of job 1 (a duplicate, or the message received again
  // after its visibility lapsed) arrives in a later window.
  scale({pj("r1-again", 1, 2)});
  sched.advance_time(window.window);
  sched.run();
  EXPECT_FALSE(next_reply<batch_outcome>()); // it waits ...
  EXPECT_EQ(launcher->calls.size(), 1u);     // ... and launches nothing
  answer_held();
  sched.run();
  // Both get the one outcome: the runner is configured.
  auto first = expect_reply<batch_outcome>();
  auto second = expect_reply<batch_outcome>();
  expect_outcome(first.outcomes.at(0), "r1", outcome_kind::done, "runner configured");
  expect_outcome(second.outcomes.at(0), "r1-again", outcome_kind::done,
                 "runner configured");
  EXPECT_EQ(launcher->calls.size(), 1u);
}

TEST_F(ScalerTest, ACopyOfAJobWhoseLaunchFailsIsGivenBackToo) {
  launcher->hold = true;
  launcher->answer = [](const launch_request& req) -> caf::expected<launch_result> {
    launch_result out;
    out.failed.push_back(launch_failure{0, req.runners[0].job, "registration_timeout",
                                        "i-1: timeout"});
    return out;
  };
  start();
  scale({pj("r1", 1)});
  sched.advance_time(window.window);
  sched.run();
  scale({pj("r1-again", 1, 2)});
  answer_held();
  sched.advance_time(window.window);
  sched.run();
  auto first = expect_reply<batch_outcome>();
  auto second = expect_reply<batch_outcome>();
  expect_outcome(first.outcomes.at(0), "r1", outcome_kind::retry, "registration_timeout");
  expect_outcome(second.outcomes.at(0), "r1-again", outcome_kind::retry,
                 "registration_timeout");
  // Nothing was configured: the ledger forgot the job, a later delivery
  // may launch for it.
  launcher->hold = false;
  launcher->answer = launcher_script{}.answer;
  scale({pj("r1-third", 1, 3)});
  expect_outcome(decide().outcomes.at(0), "r1-third", outcome_kind::done,
                 "runner configured");
}

TEST_F(ScalerTest, AJobTheLedgerHasInFlightElsewhereIsRetriedNotAcked) {
  start();
  // Another scaler incarnation reserved job 1 and has not reported yet.
  auto res = ask<reservation>(ledger, atom::reserve_v,
                              reservation_request{{runner_spec{job_key{1, 1}, {}, 7, 0, {}}},
                                                  false});
  ASSERT_EQ(res.granted.size(), 1u);
  scale({pj("r1", 1)});
  auto out = decide();
  expect_outcome(out.outcomes.at(0), "r1", outcome_kind::retry,
                 "a runner for the job is still being set up");
  EXPECT_TRUE(launcher->calls.empty());
}

TEST_F(ScalerTest, LaunchesOnlyWhatTheBudgetCanRegisterInTime) {
  github->admit_limit = 2;
  start();
  github->next_at = sched.clock().now().time_since_epoch() + 61s;
  scale({pj("r1", 1), pj("r2", 2), pj("r3", 3), pj("r4", 4)});
  sched.advance_time(window.window);
  sched.run();
  ASSERT_EQ(launcher->calls.size(), 1u);
  ASSERT_EQ(launcher->calls[0].runners.size(), 2u);
  EXPECT_EQ(launcher->calls[0].runners[0].admission, 1u); // under its ticket
  ASSERT_EQ(github->admissions.size(), 1u);
  EXPECT_EQ(github->admissions[0].count, 4);
  // The window of a 2 min launch less two 30 s AWS calls.
  EXPECT_EQ(github->admissions[0].within, caf::timespan{60s});
  EXPECT_EQ(github->released, std::vector<uint64_t>{1});
  // The others wait, hidden: no answer yet, no slot held in the ledger.
  EXPECT_FALSE(next_reply<batch_outcome>());
  EXPECT_EQ(counts().requested, 0);
  EXPECT_EQ(counts().pending, 2);
  // When the budget says so, they are decided again and launched.
  advance(61s);
  ASSERT_EQ(launcher->calls.size(), 2u);
  EXPECT_EQ(launcher->calls[1].runners.size(), 2u);
  auto out = expect_reply<batch_outcome>();
  ASSERT_EQ(out.outcomes.size(), 4u);
  for (auto& o : out.outcomes)
    EXPECT_EQ(o.kind, outcome_kind::done) << o.receipt << ": " << o.reason;
  EXPECT_EQ(stats->count("ghscale_jobs_total",
                         {{"pool", "linux"}, {"outcome", "budget_wait"}}),
            2);
}

TEST_F(ScalerTest, AJobThatWouldWaitTooLongForTheBudgetGoesBackUntilThen) {
  github->admit_limit = 0;
  start();
  // Admissions only in ten minutes: longer than the poller waits for an
  // answer (timeouts.scale, 5 min by default).
  github->next_at = sched.clock().now().time_since_epoch() + 10min;
  scale({pj("r1", 1)});
  auto out = decide();
  ASSERT_EQ(out.outcomes.size(), 1u);
  expect_outcome(out.outcomes[0], "r1", outcome_kind::retry,
                 "waiting for GitHub's write budget");
  EXPECT_GE(out.outcomes[0].delay, caf::timespan{10min - 1s});
  EXPECT_TRUE(launcher->calls.empty());
}

TEST_F(ScalerTest, DrainGivesBackWhatWaitsAndRefusesNewJobs) {
  github->admit_limit = 1;
  start();
  github->next_at = sched.clock().now().time_since_epoch() + 61s;
  scale({pj("r1", 1), pj("r2", 2)});
  sched.advance_time(window.window);
  sched.run();
  ASSERT_EQ(launcher->calls.size(), 1u); // r1 launched, r2 waits
  caf::scoped_actor drainer{sys};
  EXPECT_TRUE(scenario::ask_now<bool>(sched, drainer, scaler_handle, atom::drain_v,
                                      caf::timespan{21s}));
  auto out = expect_reply<batch_outcome>();
  ASSERT_EQ(out.outcomes.size(), 2u);
  expect_outcome(out.outcomes[0], "r1", outcome_kind::done, "runner configured");
  expect_outcome(out.outcomes[1], "r2", outcome_kind::retry, "the scaler is draining");
  // Visible again once the draining loops' long polls have returned.
  EXPECT_EQ(out.outcomes[1].delay, caf::timespan{21s});
  scale({pj("r3", 3)});
  expect_outcome(expect_reply<batch_outcome>().outcomes.at(0), "r3",
                 outcome_kind::retry, "the scaler is draining");
  EXPECT_EQ(launcher->calls.size(), 1u);
}

// -- jobs that lost their runner to another job -------------------------------------

/// Job 1 gets a runner and its message is acked; then job 9, which no
/// runner was launched for, takes that runner: nothing else will come for
/// job 1.
void ScalerTest::lose_job_ones_runner() {
  scale({pj("r1", 1)});
  decide();
  ASSERT_EQ(launcher->calls.size(), 1u);
  auto taker = pj("", 9).event;
  taker.action = job_action::in_progress;
  taker.runner_name = "linux-i-" + launcher->calls[0].client_token + "-0";
  self->send(ledger, atom::observe_v, taker);
  sched.run();
  EXPECT_EQ(counts().waiting, 1);
}

TEST_F(ScalerTest, LaunchesAReplacementWithoutAnyNewDelivery) {
  start();
  lose_job_ones_runner();
  advance(10s);
  ASSERT_EQ(launcher->calls.size(), 2u);
  ASSERT_EQ(launcher->calls[1].runners.size(), 1u);
  EXPECT_EQ(launcher->calls[1].runners[0].job, (job_key{1, 1}));
  EXPECT_EQ(counts().waiting, 0);
}

TEST_F(ScalerTest, DrainPutsJobsWaitingForAReplacementBackOnTheQueue) {
  pool.max_runners = 1; // the replacement cannot be launched
  start();
  lose_job_ones_runner();
  caf::scoped_actor drainer{sys};
  EXPECT_TRUE(scenario::ask_now<bool>(sched, drainer, scaler_handle, atom::drain_v,
                                      caf::timespan{21s}));
  ASSERT_EQ(enqueued->size(), 1u);
  auto ev = parse_job_event((*enqueued)[0].body);
  ASSERT_TRUE(ev) << describe(ev.error());
  EXPECT_EQ(ev->action, job_action::queued);
  EXPECT_EQ(ev->key, (job_key{1, 1}));
  EXPECT_EQ(ev->repository, (repository_ref{"octo", "hello", owner_type::organization}));
  EXPECT_EQ(ev->installation_id, 7);
  EXPECT_EQ((*enqueued)[0].delay, caf::timespan{21s});
}
