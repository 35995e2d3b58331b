// The runner ledger against a scripted EC2 mock, in virtual time.
#include "actors/runner_ledger.hpp"
#include "tests/actor_test.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <deque>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <stdexcept>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

/// What the EC2 mock answers to DescribeInstances, and what it was asked.
/// Once `answers` is empty it holds requests open until a `flush` tells it
/// to answer them from `answers`.
struct ec2_script {
  std::deque<caf::expected<instance_list>> answers;
  std::vector<instance_filter> filters;
  std::vector<caf::typed_response_promise<instance_list>> held;
};

/// EC2 plus a test-only control message.
using ec2_mock_actor = ec2_actor::extend<caf::reacts_to<atom::flush>>;

ec2_mock_actor spawn_ec2(caf::actor_system& sys,
                         std::shared_ptr<ec2_script> script) {
  // Collaborators are spawn arguments, as CAF 0.17.6 trips UBSan on a
  // function actor spawned without any.
  return sys.spawn(
    [](ec2_mock_actor::pointer self,
       std::shared_ptr<ec2_script> script) -> ec2_mock_actor::behavior_type {
      auto next_answer = [script] {
        auto answer = std::move(script->answers.front());
        script->answers.pop_front();
        return answer;
      };
      return {
        [](atom::fleet, const fleet_request&) -> caf::result<fleet_result> {
          return caf::make_error(errc::rejected, "not scripted");
        },
        [=](atom::describe,
            const instance_filter& filter) -> caf::result<instance_list> {
          script->filters.push_back(filter);
          if (script->answers.empty()) {
            auto promise = self->make_response_promise<instance_list>();
            script->held.push_back(promise);
            return promise;
          }
          auto answer = next_answer();
          if (!answer)
            return answer.error();
          return *answer;
        },
        [](atom::terminate, const instance_ids&) { return batch_result{}; },
        [](atom::add_tags, const instance_tags&) { return batch_result{}; },
        [=](atom::flush) {
          for (auto& promise : script->held) {
            auto answer = next_answer();
            if (answer)
              promise.deliver(*answer);
            else
              promise.deliver(answer.error());
          }
          script->held.clear();
        },
      };
    },
    std::move(script));
}

instance_list instances(std::vector<std::string> ids) {
  instance_list out;
  for (auto& id : ids)
    out.instances.push_back(
      instance_info{id, "m5.large", instance_state::running,
                    capacity_type::spot, caf::timespan{0}, {}});
  return out;
}

job_key job(int64_t id) {
  return job_key{id, 1};
}

/// Runner specs for jobs of one organization's repository.
std::vector<runner_spec> specs(const std::vector<job_key>& jobs) {
  std::vector<runner_spec> out;
  for (auto& key : jobs)
    out.push_back(runner_spec{key, {"acme", "", owner_type::organization}, 11, 0, {}});
  return out;
}

job_event lifecycle(job_action action, job_key key, std::string runner) {
  job_event ev;
  ev.action = action;
  ev.key = key;
  ev.runner_name = std::move(runner);
  return ev;
}

launched_runner up(int32_t spec, job_key key, std::string instance) {
  launched_runner r;
  r.spec_index = spec;
  r.job = key;
  r.instance_id = instance;
  r.runner_name = "linux-" + instance;
  return r;
}

class RunnerLedgerTest : public test::actor_test {
protected:
  ~RunnerLedgerTest() override {
    // The ledger re-arms its reconciliation timer and the EC2 mock may hold
    // a request open: both would outlive the test otherwise.
    script->held.clear();
    for (auto h : {caf::actor_cast<caf::actor>(ledger), caf::actor_cast<caf::actor>(ec2)})
      if (h)
        self->send_exit(h, caf::exit_reason::user_shutdown);
    sched.run();
  }

  pool_config pool_with(int32_t max_runners, int32_t min_idle,
                        runner_mode mode = runner_mode::ephemeral) {
    pool_config p;
    p.name = "linux";
    p.max_runners = max_runners;
    p.min_idle = min_idle;
    p.mode = mode;
    return p;
  }

  /// Spawns the ledger; EC2 first answers with `existing` instances.
  void start(pool_config p, std::vector<std::string> existing = {}) {
    script->answers.push_back(instances(std::move(existing)));
    spawn(std::move(p));
  }

  void spawn(pool_config p) {
    ec2 = spawn_ec2(sys, script);
    ledger = sys.spawn(runner_ledger, std::move(p), timeouts, ec2, stats);
    sched.run();
  }

  template <class T, class... Ts>
  caf::expected<T> ask(Ts&&... xs) {
    return try_ask<T>(ledger, std::forward<Ts>(xs)...);
  }

  reservation reserve(std::vector<job_key> jobs, bool topup = false) {
    auto res = ask<reservation>(atom::reserve_v,
                                reservation_request{specs(jobs), topup});
    EXPECT_TRUE(res) << sys.render(res.error());
    return res ? *res : reservation{};
  }

  ledger_counts counts() {
    auto c = ask<ledger_counts>(atom::counts_v);
    EXPECT_TRUE(c) << sys.render(c.error());
    return c ? *c : ledger_counts{};
  }

  void observe(job_event ev) {
    self->send(ledger, atom::observe_v, std::move(ev));
    sched.run();
  }

  /// The ledger's state, read between messages (the test scheduler runs
  /// nothing concurrently): the records a brute-force recount looks at.
  const runner_ledger_state& ledger_state() {
    using ledger_impl = runner_ledger_actor::stateful_pointer<runner_ledger_state>;
    auto* impl
      = dynamic_cast<ledger_impl>(caf::actor_cast<caf::abstract_actor*>(ledger));
    if (impl == nullptr)
      throw std::logic_error("the ledger is not a runner_ledger_state actor");
    return impl->state;
  }

  std::shared_ptr<ec2_script> script = std::make_shared<ec2_script>();
  metrics_ptr stats = std::make_shared<metrics>();
  timeouts_config timeouts;
  ec2_mock_actor ec2;
  runner_ledger_actor ledger;
};

} // namespace

TEST_F(RunnerLedgerTest, AnswersNotReadyUntilReconciliationAnswers) {
  spawn(pool_with(5, 0));
  ASSERT_EQ(script->held.size(), 1u);
  auto early = ask<reservation>(atom::reserve_v, reservation_request{specs({job(1)}), false});
  ASSERT_FALSE(early);
  EXPECT_TRUE(early.error() == errc::not_ready);
  script->answers.push_back(instances({"i-1", "i-2"}));
  self->send(ec2, atom::flush_v);
  sched.run();
  auto c = counts();
  EXPECT_EQ(c.pending, 2);
  EXPECT_EQ(c.active(), 2);
  auto res = reserve({job(1)});
  EXPECT_EQ(res.granted, std::vector<job_key>{job(1)});
  EXPECT_EQ(res.active, 2);
}

TEST_F(RunnerLedgerTest, ReconcilesWithThePoolTagAndRetriesAfterFailure) {
  script->answers.push_back(caf::make_error(errc::throttled, "DescribeInstances"));
  script->answers.push_back(instances({"i-7"}));
  spawn(pool_with(5, 0));
  ASSERT_EQ(script->filters.size(), 1u);
  ASSERT_EQ(script->filters[0].tags.size(), 1u);
  EXPECT_EQ(script->filters[0].tags[0].key, "ghscale:pool");
  EXPECT_EQ(script->filters[0].tags[0].value, "linux");
  EXPECT_FALSE(ask<reservation>(atom::reserve_v, reservation_request{{}, false}));
  sched.advance_time(2s); // first retry after 1 s +- 20 %
  sched.run();
  EXPECT_EQ(script->filters.size(), 2u);
  EXPECT_EQ(counts().pending, 1);
  EXPECT_TRUE(ask<reservation>(atom::reserve_v, reservation_request{{}, false}));
}

TEST_F(RunnerLedgerTest, TwoReservationsRacingForTheLastSlotGetOneGrant) {
  start(pool_with(3, 0), {"i-1", "i-2"});
  self->send(ledger, atom::reserve_v, reservation_request{specs({job(1)}), false});
  self->send(ledger, atom::reserve_v, reservation_request{specs({job(2)}), false});
  sched.run();
  auto first = next_reply<reservation>();
  auto second = next_reply<reservation>();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->granted.size() + second->granted.size(), 1u);
  EXPECT_EQ(first->granted, std::vector<job_key>{job(1)});
  EXPECT_TRUE(second->granted.empty());
  EXPECT_TRUE(second->already_served.empty());
  EXPECT_EQ(second->active, 3);
  EXPECT_EQ(second->cap, 3);
  EXPECT_EQ(counts().active(), 3);
}

TEST_F(RunnerLedgerTest, GrantsInOrderUpToTheCap) {
  start(pool_with(2, 0));
  auto res = reserve({job(1), job(2), job(3)});
  EXPECT_EQ(res.granted, (std::vector<job_key>{job(1), job(2)}));
  EXPECT_TRUE(res.already_served.empty());
  EXPECT_EQ(counts().requested, 2);
}

TEST_F(RunnerLedgerTest, AJobIsServedOnceItsRunnerIsConfiguredNotWhenReserved) {
  start(pool_with(5, 0));
  auto first = reserve({job(1)});
  EXPECT_EQ(first.granted.size(), 1u);
  // Reserved, its runner still being set up: another delivery must wait.
  auto during = reserve({job(1), job(2)});
  EXPECT_EQ(during.in_flight, std::vector<job_key>{job(1)});
  EXPECT_TRUE(during.already_served.empty());
  EXPECT_EQ(during.granted, std::vector<job_key>{job(2)});
  // Its runner is configured (the report lists it): now it is served.
  ASSERT_TRUE(ask<ledger_counts>(atom::report_v,
                                 launch_report{first.id, {up(0, job(1), "i-a")}, 0}));
  auto after = reserve({job(1)});
  EXPECT_EQ(after.already_served, std::vector<job_key>{job(1)});
  EXPECT_TRUE(after.in_flight.empty());
}

TEST_F(RunnerLedgerTest, RemembersServedJobs) {
  start(pool_with(5, 0));
  auto first = reserve({job(1)});
  EXPECT_EQ(first.granted.size(), 1u);
  ASSERT_TRUE(ask<ledger_counts>(atom::report_v,
                                 launch_report{first.id, {up(0, job(1), "i-a")}, 0}));
  auto again = reserve({job(1), job(2)});
  EXPECT_EQ(again.already_served, std::vector<job_key>{job(1)});
  EXPECT_EQ(again.granted, std::vector<job_key>{job(2)});
  // A job seen in progress needs no runner, whichever runner took it.
  observe(lifecycle(job_action::in_progress, job(3), "someone-else"));
  EXPECT_EQ(reserve({job(3)}).already_served, std::vector<job_key>{job(3)});
  // Another attempt of a served job is a new job.
  EXPECT_EQ(reserve({job_key{1, 2}}).granted.size(), 1u);
}

TEST_F(RunnerLedgerTest, ForgetsServedJobsAfterADay) {
  start(pool_with(5, 0));
  observe(lifecycle(job_action::completed, job(1), "someone-else"));
  sched.advance_time(23h);
  sched.run();
  EXPECT_EQ(reserve({job(1)}).already_served.size(), 1u);
  sched.advance_time(1h);
  sched.run();
  EXPECT_EQ(reserve({job(1)}).granted.size(), 1u);
}

TEST_F(RunnerLedgerTest, ReportReleasesUnfilledSlotsAndForgetsTheirJobs) {
  start(pool_with(5, 0));
  auto res = reserve({job(1), job(2)});
  ASSERT_EQ(res.granted.size(), 2u);
  auto after = ask<ledger_counts>(atom::report_v,
                                  launch_report{res.id, {up(0, job(1), "i-a")}, 1});
  ASSERT_TRUE(after);
  EXPECT_EQ(after->pending, 1);
  EXPECT_EQ(after->requested, 0);
  auto retry = reserve({job(1), job(2)});
  EXPECT_EQ(retry.already_served, std::vector<job_key>{job(1)});
  EXPECT_EQ(retry.granted, std::vector<job_key>{job(2)});
  auto hist = stats->histograms();
  auto key = metrics::series_key("ghscale_launch_seconds", {{"pool", "linux"}});
  auto launch = std::find_if(hist.begin(), hist.end(),
                             [&](auto& kv) { return kv.first == key; });
  ASSERT_NE(launch, hist.end());
  EXPECT_EQ(launch->second.count, 1);
}

TEST_F(RunnerLedgerTest, ARunnerRecordedBeforeItsLaunchReportsIsKnownAtOnce) {
  start(pool_with(5, 0));
  auto res = reserve({job(1), job(2)});
  ASSERT_EQ(res.granted.size(), 2u);
  // The launcher tells of i-a as soon as it is configured; i-b still waits
  // for GitHub's budget, so the launch has not reported.
  self->send(ledger, atom::observe_v, res.id, up(0, job(1), "i-a"));
  sched.run();
  auto c = counts();
  EXPECT_EQ(c.pending, 1);
  EXPECT_EQ(c.requested, 1);
  EXPECT_EQ(reserve({job(1)}).already_served, std::vector<job_key>{job(1)});
  // i-a boots and takes job 3: its own job 1 gets a replacement.
  observe(lifecycle(job_action::in_progress, job(3), "linux-i-a"));
  EXPECT_EQ(counts().running, 1);
  EXPECT_EQ(stats->count("ghscale_runner_taken_total", {{"pool", "linux"}}), 1);
  // The report repeats i-a and adds i-b: i-a is not recorded twice.
  auto after = ask<ledger_counts>(
    atom::report_v,
    launch_report{res.id, {up(0, job(1), "i-a"), up(1, job(2), "i-b")}, 0});
  ASSERT_TRUE(after);
  EXPECT_EQ(after->running, 1);
  EXPECT_EQ(after->pending, 1);
  EXPECT_EQ(after->requested, 0);
  EXPECT_FALSE(check_runner_indexes(ledger_state()));
}

TEST_F(RunnerLedgerTest, AJobThatTakesARunnerWhileItsOwnIsLaunchingHandsItOver) {
  start(pool_with(5, 0));
  auto first = reserve({job(1)});
  ASSERT_TRUE(ask<ledger_counts>(atom::report_v,
                                 launch_report{first.id, {up(0, job(1), "i-a")}, 0}));
  // Job 2's runner is still being launched when job 2 takes job 1's runner.
  auto second = reserve({job(2)});
  observe(lifecycle(job_action::in_progress, job(2), "linux-i-a"));
  // No replacement for job 1: job 2's runner, once up, is job 1's.
  EXPECT_EQ(stats->count("ghscale_runner_taken_total", {{"pool", "linux"}}), 0);
  ASSERT_TRUE(ask<ledger_counts>(atom::report_v,
                                 launch_report{second.id, {up(0, job(2), "i-b")}, 0}));
  auto next = reserve({job(9)});
  EXPECT_TRUE(next.replacements.empty());
  // Had job 2's launch failed, job 1 would need a replacement after all.
  auto third = reserve({job(3)});
  observe(lifecycle(job_action::in_progress, job(3), "linux-i-b"));
  ASSERT_TRUE(ask<ledger_counts>(atom::report_v, launch_report{third.id, {}, 1}));
  auto later = reserve({job(10)});
  ASSERT_EQ(later.replacements.size(), 1u);
  EXPECT_EQ(later.replacements[0].job, job(1));
}

TEST_F(RunnerLedgerTest, RejectsReportsOfUnknownReservations) {
  start(pool_with(5, 0));
  auto res = ask<ledger_counts>(atom::report_v, launch_report{4242, {}, 0});
  ASSERT_FALSE(res);
  EXPECT_TRUE(res.error() == errc::rejected);
}

TEST_F(RunnerLedgerTest, TracksEphemeralRunnersThroughTheirJob) {
  start(pool_with(5, 0));
  auto res = reserve({job(1)});
  ASSERT_TRUE(ask<ledger_counts>(atom::report_v,
                                 launch_report{res.id, {up(0, job(1), "i-a")}, 0}));
  observe(lifecycle(job_action::in_progress, job(1), "linux-i-a"));
  auto running = counts();
  EXPECT_EQ(running.running, 1);
  EXPECT_EQ(running.pending, 0);
  observe(lifecycle(job_action::completed, job(1), "linux-i-a"));
  auto done = counts();
  EXPECT_EQ(done.completed, 1);
  EXPECT_EQ(done.active(), 0);
  EXPECT_EQ(stats->gauge("ghscale_runners",
                         {{"pool", "linux"}, {"state", "completed"}}),
            1.0);
  observe(lifecycle(job_action::in_progress, job(9), "stranger"));
  observe(lifecycle(job_action::queued, job(10), "linux-i-a"));
  EXPECT_EQ(stats->count("ghscale_ledger_unknown_runner_total", {{"pool", "linux"}}),
            1);
  EXPECT_EQ(counts().completed, 1);
}

TEST_F(RunnerLedgerTest, ReusableRunnersReturnToReady) {
  start(pool_with(5, 0, runner_mode::reusable));
  auto res = reserve({job(1)});
  ASSERT_TRUE(ask<ledger_counts>(atom::report_v,
                                 launch_report{res.id, {up(0, job(1), "i-a")}, 0}));
  observe(lifecycle(job_action::in_progress, job(1), "linux-i-a"));
  observe(lifecycle(job_action::completed, job(1), "linux-i-a"));
  auto c = counts();
  EXPECT_EQ(c.ready, 1);
  EXPECT_EQ(c.completed, 0);
  EXPECT_EQ(c.active(), 1);
}

TEST_F(RunnerLedgerTest, ExpiresRequestedSlotsWhoseReportNeverCame) {
  timeouts.launch = 10s;
  start(pool_with(1, 0));
  auto res = reserve({job(1)});
  ASSERT_EQ(res.granted.size(), 1u);
  EXPECT_TRUE(reserve({job(2)}).granted.empty());
  sched.advance_time(39s);
  sched.run();
  EXPECT_EQ(counts().requested, 1);
  sched.advance_time(1s); // launch timeout + 30 s
  sched.run();
  EXPECT_EQ(counts().requested, 0);
  EXPECT_EQ(reserve({job(1)}).granted, std::vector<job_key>{job(1)});
  // A report that outlived its slots still records the instance it names.
  auto late = ask<ledger_counts>(atom::report_v,
                                 launch_report{res.id, {up(0, job(1), "i-late")}, 0});
  ASSERT_TRUE(late);
  EXPECT_EQ(late->pending, 1);
}

TEST_F(RunnerLedgerTest, TopsUpIdleRunnersOnceAndWithinTheCap) {
  start(pool_with(3, 2));
  auto first = reserve({}, true);
  EXPECT_EQ(first.idle_topup, 2);
  // Requested top-ups count as idle: the next window asks for none.
  EXPECT_EQ(reserve({}, true).idle_topup, 0);
  auto jobs = reserve({job(1), job(2)}, true);
  EXPECT_EQ(jobs.granted, std::vector<job_key>{job(1)});
  EXPECT_EQ(jobs.idle_topup, 0);
  // Top-up runners that came up stay idle until they take a job.
  ASSERT_TRUE(ask<ledger_counts>(
    atom::report_v,
    launch_report{first.id, {up(0, job_key{0, 0}, "i-t1"), up(1, job_key{0, 0}, "i-t2")},
                  0}));
  observe(lifecycle(job_action::in_progress, job(5), "linux-i-t1"));
  auto after = counts();
  EXPECT_EQ(after.running, 1);
  EXPECT_EQ(after.pending, 1);
  EXPECT_EQ(after.requested, 1);
}

TEST_F(RunnerLedgerTest, ReconcileTerminatesGoneRunnersAndAddsUnknownOnes) {
  start(pool_with(5, 0), {"i-1"});
  auto res = reserve({job(1)});
  ASSERT_TRUE(ask<ledger_counts>(atom::report_v,
                                 launch_report{res.id, {up(0, job(1), "i-2")}, 0}));
  script->answers.push_back(instances({"i-1", "i-3"}));
  self->send(ledger, atom::reconcile_v);
  sched.run();
  auto c = counts();
  EXPECT_EQ(c.pending, 2); // i-1 and the newly found i-3
  EXPECT_EQ(c.terminated, 1); // i-2
  // Unknown instances get the pool's runner name.
  observe(lifecycle(job_action::in_progress, job(4), "linux-i-3"));
  EXPECT_EQ(counts().running, 1);
}

TEST_F(RunnerLedgerTest, ReconcilesEveryFiveMinutes) {
  start(pool_with(5, 0), {"i-1", "i-2"});
  script->answers.push_back(instances({"i-2"}));
  sched.advance_time(4min);
  sched.run();
  EXPECT_EQ(script->filters.size(), 1u);
  sched.advance_time(1min);
  sched.run();
  EXPECT_EQ(script->filters.size(), 2u);
  auto c = counts();
  EXPECT_EQ(c.pending, 1);
  EXPECT_EQ(c.terminated, 1);
  // Terminated runners are dropped at the next pass.
  script->answers.push_back(instances({"i-2"}));
  sched.advance_time(5min);
  sched.run();
  EXPECT_EQ(counts().terminated, 0);
}

/// A registration as GitHub lists it for the org "acme".
registration_seen registration(std::string name, int64_t id, bool busy,
                               std::string status = "online") {
  return registration_seen{runner_info{id, std::move(name), std::move(status), busy, {}},
                           {"acme", "", owner_type::organization}, 11};
}

instance_info tagged_instance(std::string id, std::vector<tag> tags) {
  return instance_info{std::move(id), "m5.large", instance_state::running,
                       capacity_type::spot, caf::timespan{0}, std::move(tags)};
}

TEST_F(RunnerLedgerTest, ReconciliationWithGitHubMovesRunnersThroughTheirStates) {
  start(pool_with(5, 0));
  auto res = reserve({job(1), job(2)});
  ASSERT_TRUE(ask<ledger_counts>(
    atom::report_v,
    launch_report{res.id, {up(0, job(1), "i-a"), up(1, job(2), "i-b")}, 0}));
  sched.advance_time(30s);
  pool_inventory inv;
  inv.instances = instances({"i-a", "i-b"}).instances;
  inv.registrations = {registration("linux-i-a", 7, false),
                       registration("linux-i-b", 8, true)};
  inv.asked_at = sched.clock().now().time_since_epoch();
  auto view = ask<pool_view>(atom::reconcile_v, inv);
  ASSERT_TRUE(view) << sys.render(view.error());
  ASSERT_EQ(view->runners.size(), 2u);
  EXPECT_EQ(view->runners[0].state, runner_state::ready);
  EXPECT_EQ(view->runners[0].runner_id, 7);
  EXPECT_TRUE(view->runners[0].registered);
  EXPECT_EQ(view->runners[0].idle_since, inv.asked_at);
  EXPECT_EQ(view->runners[1].state, runner_state::running);
  EXPECT_TRUE(view->ghosts.empty());
  auto c = counts();
  EXPECT_EQ(c.ready, 1);
  EXPECT_EQ(c.running, 1);
  EXPECT_EQ(stats->histograms().size(), 2u); // launch and time-to-ready
  // The busy ephemeral runner's registration is gone: its job completed.
  inv.registrations = {registration("linux-i-a", 7, false)};
  view = ask<pool_view>(atom::reconcile_v, inv);
  ASSERT_TRUE(view);
  EXPECT_EQ(view->runners[1].state, runner_state::completed);
  EXPECT_FALSE(view->runners[1].registered);
  EXPECT_FALSE(check_runner_indexes(ledger_state()));
}

TEST_F(RunnerLedgerTest, IncompleteListingsInferNothingMissing) {
  start(pool_with(5, 0), {"i-a"});
  pool_inventory inv;
  inv.instances = instances({"i-a"}).instances;
  inv.registrations = {registration("linux-i-a", 7, true)};
  auto view = ask<pool_view>(atom::reconcile_v, inv);
  ASSERT_TRUE(view);
  EXPECT_EQ(view->runners[0].state, runner_state::running);
  inv.registrations.clear();
  inv.registrations_complete = false;
  view = ask<pool_view>(atom::reconcile_v, inv);
  ASSERT_TRUE(view);
  EXPECT_EQ(view->runners[0].state, runner_state::running);
  EXPECT_TRUE(view->runners[0].registered);
}

TEST_F(RunnerLedgerTest, ReconciliationFindsGhostsAndReadsInstanceTags) {
  start(pool_with(5, 0));
  pool_inventory inv;
  inv.instances = {tagged_instance("i-a", {{"ghscale:pool", "linux"},
                                           {"ghscale:owner", "acme/app"},
                                           {"ghscale:owner-type", "User"},
                                           {"ghscale:installation", "42"},
                                           {"ghscale:orphan", "true"}}),
                   tagged_instance("i-b", {{"ghscale:bypass-removal", "true"}})};
  inv.registrations = {registration("linux-i-gone", 9, false, "offline"),
                       registration("other-i-x", 10, false)};
  auto view = ask<pool_view>(atom::reconcile_v, inv);
  ASSERT_TRUE(view);
  ASSERT_EQ(view->runners.size(), 2u);
  auto& a = view->runners[0];
  EXPECT_EQ(a.target.owner, "acme");
  EXPECT_EQ(a.target.repo, "app");
  EXPECT_EQ(a.target.type, owner_type::user);
  EXPECT_EQ(a.installation_id, 42);
  EXPECT_TRUE(a.orphan_tagged);
  EXPECT_FALSE(a.registered);
  EXPECT_EQ(a.state, runner_state::orphaned);
  EXPECT_EQ(view->runners[1].state, runner_state::pending);
  EXPECT_TRUE(view->runners[1].bypass_removal);
  // Only this pool's registration whose instance is gone is a ghost.
  ASSERT_EQ(view->ghosts.size(), 1u);
  EXPECT_EQ(view->ghosts[0].runner.id, 9);
  auto c = counts();
  EXPECT_EQ(c.orphaned, 1);
  EXPECT_EQ(c.active(), 2); // an orphan's instance still takes a slot
  // It registered after all: an orphan no longer.
  inv.registrations.push_back(registration("linux-i-a", 12, false));
  view = ask<pool_view>(atom::reconcile_v, inv);
  ASSERT_TRUE(view);
  EXPECT_EQ(view->runners[0].state, runner_state::ready);
  EXPECT_FALSE(check_runner_indexes(ledger_state()));
}

TEST_F(RunnerLedgerTest, RunnersLaunchedAfterTheInventoryAreNeitherGoneNorGhosts) {
  start(pool_with(5, 0));
  pool_inventory inv;
  inv.asked_at = sched.clock().now().time_since_epoch();
  sched.advance_time(1s);
  auto res = reserve({job(1)});
  ASSERT_TRUE(ask<ledger_counts>(atom::report_v,
                                 launch_report{res.id, {up(0, job(1), "i-new")}, 0}));
  inv.registrations = {registration("linux-i-new", 5, false)};
  auto view = ask<pool_view>(atom::reconcile_v, inv);
  ASSERT_TRUE(view);
  EXPECT_TRUE(view->ghosts.empty());
  EXPECT_EQ(counts().terminated, 0);
}

TEST_F(RunnerLedgerTest, TerminatedByTheReaperStopsCountingAtOnce) {
  start(pool_with(1, 0), {"i-a"});
  EXPECT_TRUE(reserve({job(1)}).granted.empty());
  self->send(ledger, atom::terminate_v, instance_ids{{"i-a"}});
  sched.run();
  EXPECT_EQ(counts().terminated, 1);
  EXPECT_EQ(reserve({job(1)}).granted, std::vector<job_key>{job(1)});
}

TEST_F(RunnerLedgerTest, TellsJobRetryWhetherARunnerIsOnItsWay) {
  start(pool_with(5, 0));
  EXPECT_FALSE(*ask<bool>(atom::recheck_v, job(1)));
  reserve({job(1)});
  EXPECT_TRUE(*ask<bool>(atom::recheck_v, job(1)));
  EXPECT_FALSE(*ask<bool>(atom::recheck_v, job(2)));
}

TEST_F(RunnerLedgerTest, ReusablePoolsCountAnyUnbusyRunnerAsOnItsWay) {
  start(pool_with(5, 0, runner_mode::reusable));
  EXPECT_FALSE(*ask<bool>(atom::recheck_v, job(2)));
  auto res = reserve({job(1)});
  ASSERT_TRUE(ask<ledger_counts>(atom::report_v,
                                 launch_report{res.id, {up(0, job(1), "i-a")}, 0}));
  EXPECT_TRUE(*ask<bool>(atom::recheck_v, job(2)));
  observe(lifecycle(job_action::in_progress, job(1), "linux-i-a"));
  EXPECT_FALSE(*ask<bool>(atom::recheck_v, job(2)));
}

TEST_F(RunnerLedgerTest, SpotInterruptionReservesAReplacementForAnUnstartedJob) {
  start(pool_with(3, 0));
  auto res = reserve({job(1), job(2)});
  launched_runner a = up(0, job(1), "i-a");
  a.runner_id = 70;
  ASSERT_TRUE(ask<ledger_counts>(
    atom::report_v, launch_report{res.id, {a, up(1, job(2), "i-b")}, 0}));
  observe(lifecycle(job_action::in_progress, job(2), "linux-i-b"));
  auto in = ask<interruption>(atom::interrupt_v, std::string{"i-a"});
  ASSERT_TRUE(in);
  EXPECT_TRUE(in->known);
  EXPECT_EQ(in->runner_id, 70);
  EXPECT_EQ(in->runner_name, "linux-i-a");
  EXPECT_EQ(in->replacement.job, job(1));
  EXPECT_NE(in->reservation, 0u);
  EXPECT_EQ(counts().requested, 1);
  // A second warning for the same instance changes nothing.
  EXPECT_FALSE(ask<interruption>(atom::interrupt_v, std::string{"i-a"})->known);
  // The running job's runner needs no replacement: its job started.
  auto busy = ask<interruption>(atom::interrupt_v, std::string{"i-b"});
  ASSERT_TRUE(busy);
  EXPECT_TRUE(busy->known);
  EXPECT_EQ(busy->reservation, 0u);
  EXPECT_FALSE(ask<interruption>(atom::interrupt_v, std::string{"i-zz"})->known);
  // The replacement comes up under its reservation.
  ASSERT_TRUE(ask<ledger_counts>(atom::report_v,
                                 launch_report{in->reservation, {up(0, job(1), "i-c")}, 0}));
  auto c = counts();
  EXPECT_EQ(c.requested, 0);
  EXPECT_EQ(c.pending, 2);
  EXPECT_FALSE(check_runner_indexes(ledger_state()));
}

TEST_F(RunnerLedgerTest, SpotInterruptionAtTheCapWaitsForCapacity) {
  start(pool_with(1, 0));
  auto res = reserve({job(1)});
  ASSERT_TRUE(ask<ledger_counts>(atom::report_v,
                                 launch_report{res.id, {up(0, job(1), "i-a")}, 0}));
  auto in = ask<interruption>(atom::interrupt_v, std::string{"i-a"});
  ASSERT_TRUE(in);
  EXPECT_EQ(in->reservation, 0u);
  // Once the interrupted instance is gone, the next reservation launches it.
  self->send(ledger, atom::terminate_v, instance_ids{{"i-a"}});
  sched.run();
  auto next = reserve({});
  ASSERT_EQ(next.replacements.size(), 1u);
  EXPECT_EQ(next.replacements[0].job, job(1));
}

TEST_F(RunnerLedgerTest, MeasuresTimeToStartFromTheEvent) {
  start(pool_with(5, 0));
  auto ev = lifecycle(job_action::in_progress, job(1), "anyone");
  ev.created_at = 100s;
  ev.started_at = 130s;
  observe(ev);
  auto histograms = stats->histograms();
  ASSERT_EQ(histograms.size(), 1u);
  EXPECT_EQ(histograms[0].first, "ghscale_time_to_start_seconds{pool=\"linux\"}");
  EXPECT_EQ(histograms[0].second.count, 1);
  EXPECT_DOUBLE_EQ(histograms[0].second.sum, 30.0);
}

namespace {

/// What the ledger must count, kept by the test from what it told the
/// ledger: every instance's state and which ones are top-ups, and the slots
/// of reservations not reported yet.
struct ledger_model {
  struct open_reservation {
    int32_t slots = 0;
    int32_t topups = 0;
    caf::actor_clock::time_point at;
    std::vector<job_key> jobs; // the jobs its slots were reserved for
  };
  std::map<std::string, runner_state> instances;
  std::set<std::string> topups;
  std::map<uint64_t, open_reservation> open;

  /// Drops reservations the ledger releases as overdue at `now`; answers
  /// the jobs whose slots went with them.
  std::vector<job_key> expire(caf::actor_clock::time_point now,
                              caf::timespan deadline) {
    std::vector<job_key> out;
    for (auto i = open.begin(); i != open.end();) {
      if (now - i->second.at < deadline) {
        ++i;
        continue;
      }
      out.insert(out.end(), i->second.jobs.begin(), i->second.jobs.end());
      i = open.erase(i);
    }
    return out;
  }

  int32_t in(runner_state s) const {
    return static_cast<int32_t>(
      std::count_if(instances.begin(), instances.end(),
                    [s](auto& kv) { return kv.second == s; }));
  }

  ledger_counts counts() const {
    ledger_counts out;
    for (auto& [id, res] : open)
      out.requested += res.slots;
    out.pending = in(runner_state::pending);
    out.ready = in(runner_state::ready);
    out.running = in(runner_state::running);
    out.completed = in(runner_state::completed);
    return out;
  }

  int32_t idle() const {
    int32_t out = in(runner_state::ready);
    for (auto& [id, res] : open)
      out += res.topups;
    for (auto& id : topups)
      out += instances.at(id) == runner_state::pending ? 1 : 0;
    return out;
  }

  std::vector<std::string> in_state(runner_state s) const {
    std::vector<std::string> out;
    for (auto& [id, state] : instances)
      if (state == s)
        out.push_back(id);
    return out;
  }
};

bool same_counts(const ledger_counts& a, const ledger_counts& b) {
  return a.requested == b.requested && a.pending == b.pending
         && a.ready == b.ready && a.running == b.running
         && a.completed == b.completed && a.failed == b.failed
         && a.orphaned == b.orphaned && a.terminated == b.terminated;
}

/// Counts by looking at every record, as the ledger once did per message.
ledger_counts recount(const runner_ledger_state& st) {
  std::array<int32_t, runner_state_count> n{};
  for (auto& [id, r] : st.runners)
    ++n[static_cast<size_t>(r.state)];
  return ledger_counts{n[0], n[1], n[2], n[3], n[4], n[5], n[6], n[7]};
}

/// Whether a slot is requested for `job`, found by looking at every record.
bool has_requested_slot(const runner_ledger_state& st, const job_key& job) {
  return std::any_of(st.runners.begin(), st.runners.end(), [&](auto& kv) {
    return kv.second.state == runner_state::requested && kv.second.job == job;
  });
}

/// The first unstarted runner bound to `job` other than `except`, found by
/// looking at every record: the runner a taker of `job` hands back.
const runner_record* own_unstarted(const runner_ledger_state& st,
                                   const job_key& job, const std::string& except) {
  for (auto& [id, r] : st.runners)
    if (id != except && r.job == job
        && (r.state == runner_state::pending || r.state == runner_state::ready))
      return &r;
  return nullptr;
}

} // namespace

// Thousands of reservations, launches and lifecycle events, with runners
// taken by other jobs (handed back or replaced), top-ups, unfilled and
// expired slots: the ledger's incremental counts must always match what it
// was told and what its records say.
TEST_F(RunnerLedgerTest, CountsStayExactThroughThousandsOfMessages) {
  timeouts.launch = 10s;
  auto deadline = timeouts.launch + 30s;
  constexpr int32_t min_idle = 20;
  constexpr int rounds = 250;
  start(pool_with(100000, min_idle));
  std::mt19937_64 rng{7};
  auto pick = [&rng](size_t n) { return static_cast<size_t>(rng() % n); };
  ledger_model model;
  std::set<job_key> needs_runner; // jobs the ledger must offer as replacements
  std::set<job_key> observed;     // keys the ledger saw in progress or completed
  /// Jobs that took another's runner while their own was launching: that
  /// launch serves the other job (taker -> the other job).
  std::map<job_key, job_key> handovers;
  int64_t next_job = 1;
  int64_t next_taker = 1000000;
  int next_instance = 0;
  size_t replacements = 0;
  int64_t takes = 0;
  int swaps = 0;
  int adoptions = 0;
  int handed_over = 0;
  int redirected = 0;
  auto check_counts = [&](const ledger_counts& got) {
    EXPECT_TRUE(same_counts(got, model.counts()))
      << "at " << sched.clock().now().time_since_epoch().count();
  };
  auto report = [&](const reservation& res) {
    launch_report rep{res.id, {}, 0};
    model.open.erase(res.id);
    auto launch = [&](const job_key& key) {
      auto instance = "i-" + std::to_string(next_instance++);
      rep.launched.push_back(up(0, key, instance));
      model.instances[instance] = runner_state::pending;
      if (key.job_id == 0) {
        model.topups.insert(instance);
      } else if (handovers.erase(key) > 0) {
        // Its job took another's runner meanwhile: this one is the other's.
        ++handed_over;
      } else if (observed.count(key) > 0 && !needs_runner.empty()) {
        // A runner launched for a job some runner already took serves the
        // oldest job waiting for a replacement.
        needs_runner.erase(needs_runner.begin());
        ++adoptions;
      }
    };
    std::vector<job_key> unfilled;
    for (size_t i = 0; i < res.granted.size(); ++i)
      if (i % 5 != 4) // every fifth granted slot stays unfilled
        launch(res.granted[i]);
      else
        unfilled.push_back(res.granted[i]);
    for (auto& spec : res.replacements)
      launch(spec.job);
    for (int32_t i = 0; i < (res.idle_topup + 1) / 2; ++i)
      launch(job_key{0, 0});
    // After the runners that came up: a job that handed its runner over and
    // whose own launch did not come is owed a replacement.
    for (auto& key : unfilled)
      if (auto h = handovers.find(key); h != handovers.end()) {
        needs_runner.insert(h->second);
        handovers.erase(h);
      }
    auto got = ask<ledger_counts>(atom::report_v, rep);
    ASSERT_TRUE(got);
    check_counts(*got);
  };
  auto take = [&](const std::string& instance, job_key taker) {
    auto& st = ledger_state();
    auto before = st.runners.at(instance);
    needs_runner.erase(taker);
    observed.insert(taker);
    auto meant = std::find_if(handovers.begin(), handovers.end(),
                              [&](auto& h) { return h.second == taker; });
    // A runner whose own job already started elsewhere costs that job
    // nothing when another job takes it.
    if (!before.is_topup() && before.job != taker && observed.count(before.job) == 0) {
      if (auto* own = own_unstarted(st, taker, instance)) {
        auto own_id = own->id;
        observe(lifecycle(job_action::in_progress, taker, before.runner_name));
        EXPECT_EQ(ledger_state().runners.at(own_id).job, before.job);
        ++swaps;
      } else if (meant != handovers.end()) {
        // The runner being launched for the taker serves the job it took
        // the runner of.
        meant->second = before.job;
        ++redirected;
        observe(lifecycle(job_action::in_progress, taker, before.runner_name));
      } else if (has_requested_slot(st, taker) && handovers.count(taker) == 0) {
        handovers.emplace(taker, before.job);
        observe(lifecycle(job_action::in_progress, taker, before.runner_name));
      } else {
        needs_runner.insert(before.job);
        ++takes;
        observe(lifecycle(job_action::in_progress, taker, before.runner_name));
      }
    } else {
      observe(lifecycle(job_action::in_progress, taker, before.runner_name));
    }
    // Any other runner being launched for the taker it needs no more.
    for (auto i = handovers.begin(); i != handovers.end();)
      i = i->second == taker ? handovers.erase(i) : std::next(i);
    auto& after = ledger_state().runners.at(instance);
    EXPECT_EQ(after.job, before.is_topup() ? before.job : taker);
    EXPECT_EQ(after.state, runner_state::running);
    model.instances[instance] = runner_state::running;
  };
  for (int round = 0; round < rounds; ++round) {
    // Overdue slots go: jobs handed their runner over are owed one.
    for (auto& key : model.expire(sched.clock().now(), deadline))
      if (auto h = handovers.find(key); h != handovers.end()) {
        needs_runner.insert(h->second);
        handovers.erase(h);
      }
    std::vector<job_key> jobs;
    for (int i = 0; i < 8; ++i)
      jobs.push_back(job(next_job++));
    auto idle_before = model.idle();
    auto active_before = model.counts().active();
    auto res = reserve(jobs, true);
    EXPECT_EQ(res.granted, jobs);
    EXPECT_EQ(res.active, active_before);
    EXPECT_EQ(res.idle_topup, std::max(0, min_idle - idle_before));
    std::set<job_key> offered;
    for (auto& spec : res.replacements)
      offered.insert(spec.job);
    EXPECT_EQ(offered, needs_runner);
    EXPECT_EQ(offered.size(), res.replacements.size());
    replacements += res.replacements.size();
    needs_runner.clear();
    std::vector<job_key> reserved = res.granted;
    for (auto& spec : res.replacements)
      reserved.push_back(spec.job);
    model.open[res.id] = ledger_model::open_reservation{
      static_cast<int32_t>(res.granted.size() + res.replacements.size())
        + res.idle_topup,
      res.idle_topup, sched.clock().now(), reserved};
    // Most reports come at once; some after this round's events, some never.
    bool late = round % 10 == 5;
    if (round % 10 != 3 && !late)
      report(res);
    for (int i = 0; i < 6; ++i) {
      auto pending = model.in_state(runner_state::pending);
      if (pending.empty())
        break;
      auto instance = pending[pick(pending.size())];
      auto& st = ledger_state();
      auto& bound = st.runners.at(instance).job;
      switch (pick(5)) {
        case 0: // the job it was launched for (or a new one for a top-up)
          take(instance, bound.job_id != 0 ? bound : job_key{next_taker++, 1});
          break;
        case 1: { // the job another pending runner was launched for
          auto other = pending[pick(pending.size())];
          auto& theirs = st.runners.at(other).job;
          take(instance, theirs.job_id != 0 ? theirs : job_key{next_taker++, 1});
          break;
        }
        case 2: // a job no runner was launched for
          take(instance, job_key{next_taker++, 1});
          break;
        case 3: // a job a runner being launched was handed over to
          take(instance, handovers.empty() ? job_key{next_taker++, 1}
                                           : handovers.begin()->second);
          break;
        default: // a job whose slot is still requested
          take(instance, late ? res.granted[pick(res.granted.size())]
                              : job_key{next_taker++, 1});
      }
    }
    auto running = model.in_state(runner_state::running);
    for (int i = 0; i < 5 && !running.empty(); ++i) {
      auto instance = running[pick(running.size())];
      if (model.instances[instance] != runner_state::running)
        continue;
      auto& r = ledger_state().runners.at(instance);
      observed.insert(r.job);
      observe(lifecycle(job_action::completed, r.job, r.runner_name));
      model.instances[instance] = runner_state::completed;
    }
    auto stranger = job_key{next_taker++, 1};
    observed.insert(stranger);
    observe(lifecycle(job_action::in_progress, stranger, "stranger"));
    if (late)
      report(res);
    check_counts(counts());
    if (round % 25 == 0 || round == rounds - 1) {
      EXPECT_TRUE(same_counts(recount(ledger_state()), model.counts()));
      auto drift = check_runner_indexes(ledger_state());
      EXPECT_FALSE(drift) << sys.render(drift);
    }
    sched.advance_time(1s);
    sched.run();
  }
  // Every path above was taken, often.
  EXPECT_GT(model.instances.size(), 2000u);
  EXPECT_GT(swaps, 20);
  EXPECT_GT(takes, 50);
  EXPECT_GT(adoptions, 0);
  EXPECT_GT(handed_over, 0);
  EXPECT_GT(redirected, 0);
  EXPECT_GT(replacements, 50u);
  EXPECT_EQ(stats->count("ghscale_runner_taken_total", {{"pool", "linux"}}), takes);
  EXPECT_EQ(stats->count("ghscale_ledger_unknown_runner_total", {{"pool", "linux"}}),
            rounds);
}
