// Job retry behind mocks of the ledger, the queue and GitHub, in virtual time.
#include "actors/job_retry.hpp"
#include "tests/actor_test.hpp"
#include "tests/installation_client_mock.hpp"
#include "transport/workflow_job.hpp"

#include <map>
#include <memory>
#include <set>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

/// What the mocks answer, and what they were asked.
struct world_script : test::installation_script {
  std::set<job_key> on_their_way;
  std::map<std::string, int64_t> installations; // lookups by full name
  std::vector<job_key> ledger_queries;
  std::vector<std::string> enqueued; // bodies
};
using script_ptr = std::shared_ptr<world_script>;

job_tracker_actor spawn_ledger(caf::actor_system& sys, script_ptr script) {
  return sys.spawn([](script_ptr script) -> job_tracker_actor::behavior_type {
    return {
      [=](atom::recheck, const job_key& job) {
        script->ledger_queries.push_back(job);
        return script->on_their_way.count(job) > 0;
      },
    };
  }, std::move(script));
}

queue_actor spawn_queue(caf::actor_system& sys, script_ptr script) {
  return sys.spawn([](script_ptr script) -> queue_actor::behavior_type {
    auto unscripted = [] { return caf::make_error(errc::rejected, "not scripted"); };
    return {
      [=](atom::receive, const receive_request&) -> caf::result<received_batch> {
        return unscripted();
      },
      [=](atom::remove, const std::vector<std::string>&) -> caf::result<batch_result> {
        return unscripted();
      },
      [=](atom::visibility,
          const std::vector<visibility_change>&) -> caf::result<batch_result> {
        return unscripted();
      },
      [=](atom::enqueue, const std::vector<outgoing_message>& msgs) {
        batch_result out;
        for (size_t i = 0; i < msgs.size(); ++i) {
          script->enqueued.push_back(msgs[i].body);
          out.succeeded.push_back(std::to_string(i));
        }
        return out;
      },
      [](atom::depth) { return queue_depth{}; },
    };
  }, std::move(script));
}

github_app_actor spawn_app(caf::actor_system& sys, script_ptr script,
                           installation_client_actor client) {
  return sys.spawn([](script_ptr script, installation_client_actor client)
                     -> github_app_actor::behavior_type {
    return {
      [=](atom::client, int64_t) { return client; },
      [=](atom::lookup, const repository_ref& target) -> caf::result<int64_t> {
        auto i = script->installations.find(target.full_name());
        if (i == script->installations.end())
          return caf::make_error(errc::not_found, "no installation");
        return i->second;
      },
      [](atom::drain, caf::timespan) { return true; },
      [](atom::mint, int64_t) -> caf::result<github_response> {
        return caf::make_error(errc::rejected, "not scripted");
      },
    };
  }, std::move(script), std::move(client));
}

job_event queued_job(int64_t id, int64_t installation = 7) {
  job_event ev;
  ev.action = job_action::queued;
  ev.key = job_key{id, 2};
  ev.run_id = 900;
  ev.repository = repository_ref{"octo", "hello", owner_type::organization};
  ev.installation_id = installation;
  ev.labels = {"self-hosted", "linux"};
  return ev;
}

class JobRetryTest : public test::actor_test {
protected:
  JobRetryTest() {
    cfg.delay = 30s;
    cfg.max_delay = 5min;
    cfg.max_attempts = 3;
    cfg.jitter = 0.0;
  }

  void start() {
    auto client = stop_at_teardown(test::spawn_installation_client(sys, script));
    std::map<std::string, job_retry_route> routes;
    routes["linux"] = job_retry_route{stop_at_teardown(spawn_ledger(sys, script)),
                                      stop_at_teardown(spawn_queue(sys, script)),
                                      stop_at_teardown(spawn_app(sys, script, client))};
    retry = stop_at_teardown(
      sys.spawn(job_retry, cfg, std::move(routes), timeouts_config{}, stats, 1));
    sched.run();
  }

  void recheck_job(job_event ev, std::string pool = "linux") {
    self->send(retry, atom::recheck_v, recheck{std::move(pool), std::move(ev)});
    sched.run();
  }

  void advance(caf::timespan d) {
    sched.advance_time(d);
    sched.run();
  }

  int64_t outcomes(const std::string& outcome) {
    return stats->count("ghscale_job_rechecks_total",
                        {{"pool", "linux"}, {"outcome", outcome}});
  }

  job_retry_config cfg;
  script_ptr script = std::make_shared<world_script>();
  metrics_ptr stats = std::make_shared<metrics>();
  job_retry_actor retry;
};

} // namespace

TEST_F(JobRetryTest, ReinjectsAJobStillQueuedWithNoRunnerAfterItsDelay) {
  start();
  recheck_job(queued_job(1));
  advance(29s);
  EXPECT_TRUE(script->queries.empty());
  advance(1s);
  ASSERT_EQ(script->queries.size(), 1u);
  EXPECT_EQ(script->queries[0].job_id, 1);
  EXPECT_EQ(script->ledger_queries, (std::vector<job_key>{job_key{1, 2}}));
  ASSERT_EQ(script->enqueued.size(), 1u);
  // Put back as GitHub's own webhook, run attempt included.
  auto ev = parse_job_event(script->enqueued[0]);
  ASSERT_TRUE(ev) << sys.render(ev.error());
  EXPECT_EQ(ev->action, job_action::queued);
  EXPECT_EQ(ev->key, (job_key{1, 2}));
  EXPECT_EQ(ev->installation_id, 7);
  EXPECT_EQ(ev->labels, (std::vector<std::string>{"self-hosted", "linux"}));
  EXPECT_EQ(outcomes("reinjected"), 1);
}

TEST_F(JobRetryTest, LeavesJobsThatStartedOrHaveARunnerComing) {
  script->statuses.emplace(1, std::string{"in_progress"});
  script->on_their_way.insert(job_key{2, 2});
  start();
  recheck_job(queued_job(1));
  recheck_job(queued_job(2));
  advance(30s);
  EXPECT_TRUE(script->enqueued.empty());
  EXPECT_EQ(script->ledger_queries, (std::vector<job_key>{job_key{2, 2}}));
  EXPECT_EQ(outcomes("not_queued"), 1);
  EXPECT_EQ(outcomes("runner_on_its_way"), 1);
}

TEST_F(JobRetryTest, BacksOffPerJobAndGivesUpAfterMaxAttempts) {
  start();
  for (int attempt = 0; attempt < 4; ++attempt)
    recheck_job(queued_job(1));
  EXPECT_EQ(outcomes("gave_up"), 1);
  // Delays 30 s, 60 s and 120 s: one re-check is due after each.
  advance(30s);
  EXPECT_EQ(script->queries.size(), 1u);
  advance(30s);
  EXPECT_EQ(script->queries.size(), 2u);
  advance(59s);
  EXPECT_EQ(script->queries.size(), 2u);
  advance(1s);
  EXPECT_EQ(script->queries.size(), 3u);
  EXPECT_EQ(script->enqueued.size(), 3u);
  advance(1h);
  EXPECT_EQ(script->queries.size(), 3u);
}

TEST_F(JobRetryTest, ItsOwnErrorsAreCountedNotRetried) {
  script->statuses.emplace(1, caf::make_error(errc::backend_failure, "GitHub 502"));
  start();
  recheck_job(queued_job(1));
  advance(30s);
  EXPECT_EQ(outcomes("status_failed"), 1);
  advance(1h);
  EXPECT_EQ(script->queries.size(), 1u);
  EXPECT_TRUE(script->enqueued.empty());
  recheck_job(queued_job(3), "no-such-pool");
  EXPECT_EQ(stats->count("ghscale_job_rechecks_total",
                         {{"pool", "no-such-pool"}, {"outcome", "unknown_pool"}}),
            1);
}

TEST_F(JobRetryTest, LooksUpTheInstallationOfEventsWithoutOne) {
  script->installations["octo/hello"] = 7;
  start();
  recheck_job(queued_job(1, 0));
  recheck_job([] {
    auto ev = queued_job(2, 0);
    ev.repository.repo = "unknown";
    return ev;
  }());
  advance(30s);
  EXPECT_EQ(script->enqueued.size(), 1u);
  EXPECT_EQ(outcomes("client_failed"), 1);
}
