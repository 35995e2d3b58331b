#include "actors/embedded/embedded_queue.hpp"
#include "actors/embedded/sim_cloud.hpp"
#include "actors/embedded/sim_github.hpp"
#include "tests/actor_test.hpp"
#include "transport/workflow_job.hpp"

#include <map>
#include <memory>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

using stats_map = std::map<std::string, int64_t>;

/// A cloud that only records which instances were told their runner ended.
sim_cloud_actor::behavior_type
recording_cloud(sim_cloud_actor::pointer,
                std::shared_ptr<std::vector<std::string>> finished) {
  return {
    [](atom::fleet, const fleet_request&) { return fleet_result{}; },
    [](atom::describe, const instance_filter&) { return instance_list{}; },
    [](atom::terminate, const instance_ids&) { return batch_result{}; },
    [](atom::add_tags, const instance_tags&) { return batch_result{}; },
    [](atom::put_param, const parameter& p) { return p.name; },
    [](atom::del_param, const std::string& name) { return name; },
    [](atom::inject, const sim_fault&) {},
    [](atom::connect, const queue_actor&) {},
    [](atom::interrupt, const std::string&) {},
    [](atom::online, const std::string&) {},
    [finished](atom::finished, const std::string& id) { finished->push_back(id); },
    [](atom::stats) { return api_calls{}; },
    [](atom::flush, uint64_t) {},
  };
}

class SimGithubTest : public test::actor_test {
protected:
  SimGithubTest() {
    sim.seed = 7;
    sim.token_ttl = 1h;
    sim.github_hourly_limit = 15000;
    sim.github_writes_per_minute = 0;
  }

  sim_github_actor start() {
    return stop_at_teardown(sys.spawn(sim_github, sim, stats));
  }

  /// The webhook sink: a real embedded queue.
  queue_actor start_sink() {
    queue_config qc;
    qc.name = "webhooks";
    return stop_at_teardown(sys.spawn(embedded_queue, qc, queue_actor{}, stats));
  }

  sim_cloud_actor start_recording_cloud() {
    return sys.spawn(recording_cloud, finished);
  }

  github_response call(const sim_github_actor& gh, github_request req) {
    return ask<github_response>(gh, atom::call_v, std::move(req));
  }

  github_response mint(const sim_github_actor& gh, int64_t installation = 1) {
    github_request req;
    req.op = github_op::create_installation_token;
    req.installation_id = installation;
    req.credential = secret_string{"app-jwt"};
    return call(gh, req);
  }

  static github_request with(const github_response& token, github_op op) {
    github_request req;
    req.op = op;
    req.installation_id = 1;
    req.credential = token.secret;
    return req;
  }

  static github_request jit(const github_response& token, repository_ref target,
                            std::string name, std::vector<std::string> labels) {
    auto req = with(token, github_op::generate_jit_config);
    req.target = std::move(target);
    req.runner_name = std::move(name);
    req.labels = std::move(labels);
    return req;
  }

  static github_request job_query(const github_response& token,
                                  repository_ref repo, int64_t job_id) {
    auto req = with(token, github_op::get_job);
    req.target = std::move(repo);
    req.job_id = job_id;
    return req;
  }

  static sim_job make_job(int64_t id, repository_ref repo,
                          std::vector<std::string> labels,
                          caf::timespan run_for = 5min) {
    sim_job j;
    j.event.key = {id, 1};
    j.event.run_id = id * 10;
    j.event.repository = std::move(repo);
    j.event.installation_id = 1;
    j.event.labels = std::move(labels);
    j.body = to_webhook_payload(j.event);
    j.run_for = run_for;
    return j;
  }

  void inject(const sim_github_actor& gh, const sim_job& j) {
    self->send(gh, atom::inject_v, j);
    sched.run();
  }

  void inject(const sim_github_actor& gh, sim_fault f) {
    self->send(gh, atom::inject_v, std::move(f));
    sched.run();
  }

  void online(const sim_github_actor& gh, std::string instance,
              const secret_string& config) {
    self->send(gh, atom::online_v, std::move(instance), config);
    sched.run();
  }

  stats_map github_stats(const sim_github_actor& gh) {
    auto res = ask<api_calls>(gh, atom::stats_v);
    return {res.by_kind.begin(), res.by_kind.end()};
  }

  /// Every webhook in the sink, parsed, deleting them from the queue.
  std::vector<job_event> drain(const queue_actor& q) {
    std::vector<job_event> out;
    auto batch = ask<received_batch>(q, atom::receive_v, receive_request{10, 0s, 30s});
    std::vector<std::string> receipts;
    for (auto& m : batch.messages) {
      auto ev = parse_job_event(m.body);
      EXPECT_TRUE(ev) << sys.render(ev.error());
      if (ev)
        out.push_back(*ev);
      receipts.push_back(m.receipt);
    }
    ask<batch_result>(q, atom::remove_v, std::move(receipts));
    return out;
  }

  const repository_ref acme_org{"acme", "", owner_type::organization};
  const repository_ref acme_web{"acme", "web", owner_type::organization};
  const repository_ref acme_api{"acme", "api", owner_type::organization};
  const repository_ref other_repo{"other", "repo", owner_type::organization};

  simulation_config sim;
  metrics_ptr stats = std::make_shared<metrics>();
  std::shared_ptr<std::vector<std::string>> finished
    = std::make_shared<std::vector<std::string>>();
};

TEST_F(SimGithubTest, TokensAreMintedWithAJwtAndExpire) {
  auto gh = start();
  github_request no_jwt;
  no_jwt.op = github_op::create_installation_token;
  no_jwt.installation_id = 1;
  EXPECT_EQ(call(gh, no_jwt).status, 401);
  auto token = mint(gh);
  EXPECT_EQ(token.status, 201);
  EXPECT_EQ(token.secret.value, "ghs_sim_1");
  EXPECT_EQ(token.expires_at, sys.clock().now().time_since_epoch() + 1h);
  EXPECT_EQ(mint(gh).secret.value, "ghs_sim_2");
  EXPECT_EQ(mint(gh, 0).status, 404);
  EXPECT_EQ(call(gh, job_query(token, acme_web, 99)).status, 404);
  auto forged = token;
  forged.secret = secret_string{"ghs_forged"};
  auto rejected = call(gh, job_query(forged, acme_web, 99));
  EXPECT_EQ(rejected.status, 401);
  EXPECT_EQ(rejected.message, "Bad credentials");
  advance(1h);
  EXPECT_EQ(call(gh, job_query(token, acme_web, 99)).status, 401);
}

TEST_F(SimGithubTest, EphemeralRunnerTakesTheJobAndWebhooksFlow) {
  auto gh = start();
  auto sink = start_sink();
  self->send(gh, atom::connect_v, sink, start_recording_cloud());
  sched.run();
  auto job = make_job(100, acme_web, {"self-hosted", "linux"});
  job.duplicates = 1;
  inject(gh, job);
  auto queued = drain(sink);
  ASSERT_EQ(queued.size(), 2u);
  EXPECT_EQ(queued[0].action, job_action::queued);
  EXPECT_EQ(queued[1].key, (job_key{100, 1}));
  auto token = mint(gh);
  auto reg = call(gh, jit(token, acme_org, "runner-1", {"self-hosted", "Linux", "x64"}));
  EXPECT_EQ(reg.status, 201);
  EXPECT_EQ(reg.runner_id, 1);
  EXPECT_EQ(reg.secret.value, "jit_1");
  EXPECT_EQ(call(gh, job_query(token, acme_web, 100)).job_status, "queued");
  online(gh, "i-1", reg.secret);
  auto started = drain(sink);
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].action, job_action::in_progress);
  EXPECT_EQ(started[0].key, (job_key{100, 1}));
  EXPECT_EQ(started[0].runner_name, "runner-1");
  EXPECT_EQ(call(gh, job_query(token, acme_web, 100)).job_status, "in_progress");
  auto listed = call(gh, [&] {
    auto req = with(token, github_op::list_runners);
    req.target = acme_org;
    return req;
  }());
  ASSERT_EQ(listed.runners.size(), 1u);
  EXPECT_EQ(listed.runners[0].status, "online");
  EXPECT_TRUE(listed.runners[0].busy);
  auto busy_delete = with(token, github_op::delete_runner);
  busy_delete.runner_id = 1;
  auto refused = call(gh, busy_delete);
  EXPECT_EQ(refused.status, 422);
  EXPECT_EQ(refused.message, "Bad request - Runner is still running a job");
  advance(5min - 1s);
  EXPECT_TRUE(drain(sink).empty());
  advance(1s);
  auto completed = drain(sink);
  ASSERT_EQ(completed.size(), 1u);
  EXPECT_EQ(completed[0].action, job_action::completed);
  EXPECT_EQ(completed[0].runner_name, "runner-1");
  EXPECT_EQ(*finished, std::vector<std::string>{"i-1"});
  EXPECT_EQ(call(gh, job_query(token, acme_web, 100)).job_status, "completed");
  EXPECT_EQ(call(gh, busy_delete).status, 404); // an ephemeral runner is gone
  auto s = github_stats(gh);
  EXPECT_EQ(s["jobs_queued"], 1);
  EXPECT_EQ(s["jobs_started"], 1);
  EXPECT_EQ(s["jobs_completed"], 1);
  EXPECT_EQ(s["runners_registered"], 1);
  EXPECT_EQ(s["jit_configs_created"], 1);
  EXPECT_EQ(s["jobs_never_started"], 0);
  EXPECT_EQ(s["webhooks_delivered"], 4);
  EXPECT_EQ(s["generate_jit_config 201"], 1);
  EXPECT_EQ(s["get_job 200"], 3);
  EXPECT_EQ(s["delete_runner 422"], 1);
  EXPECT_EQ(s["delete_runner 404"], 1);
}

TEST_F(SimGithubTest, RunnersTakeOnlyJobsTheirLabelsAndScopeCover) {
  auto gh = start();
  inject(gh, make_job(1, acme_web, {"gpu"}));
  inject(gh, make_job(2, other_repo, {"linux"}));
  inject(gh, make_job(3, acme_api, {"linux"}));
  auto token = mint(gh);
  auto repo_runner = call(gh, jit(token, acme_web, "web-1", {"linux"}));
  online(gh, "i-1", repo_runner.secret);
  for (int64_t id : {1, 2, 3}) {
    auto repo = id == 1 ? acme_web : id == 2 ? other_repo : acme_api;
    EXPECT_EQ(call(gh, job_query(token, repo, id)).job_status, "queued") << id;
  }
  auto org_runner = call(gh, jit(token, acme_org, "org-1", {"LINUX"}));
  online(gh, "i-2", org_runner.secret);
  EXPECT_EQ(call(gh, job_query(token, acme_api, 3)).job_status, "in_progress");
  EXPECT_EQ(call(gh, job_query(token, acme_web, 1)).job_status, "queued");
  EXPECT_EQ(call(gh, job_query(token, other_repo, 2)).job_status, "queued");
  EXPECT_EQ(call(gh, job_query(token, acme_api, 1)).status, 404); // wrong repo
  auto s = github_stats(gh);
  EXPECT_EQ(s["jobs_never_started"], 2);
  EXPECT_EQ(s["runners_idle_never_used"], 1);
}

TEST_F(SimGithubTest, ReusableRunnerTakesOneJobAfterAnother) {
  auto gh = start();
  self->send(gh, atom::connect_v, start_sink(), start_recording_cloud());
  sched.run();
  inject(gh, make_job(1, acme_web, {"linux"}, 1min));
  inject(gh, make_job(2, acme_api, {"linux"}, 1min));
  auto token = mint(gh);
  auto req = with(token, github_op::create_registration_token);
  req.target = acme_org;
  req.runner_name = "reusable-1";
  req.labels = {"linux"};
  auto reg = call(gh, req);
  EXPECT_EQ(reg.status, 201);
  EXPECT_EQ(reg.secret.value, "reg_1");
  online(gh, "i-7", reg.secret);
  EXPECT_EQ(call(gh, job_query(token, acme_web, 1)).job_status, "in_progress");
  EXPECT_EQ(call(gh, job_query(token, acme_api, 2)).job_status, "queued");
  advance(1min);
  EXPECT_EQ(call(gh, job_query(token, acme_web, 1)).job_status, "completed");
  EXPECT_EQ(call(gh, job_query(token, acme_api, 2)).job_status, "in_progress");
  advance(1min);
  EXPECT_EQ(call(gh, job_query(token, acme_api, 2)).job_status, "completed");
  EXPECT_TRUE(finished->empty()); // a reusable runner's instance stays
  auto listed = with(token, github_op::list_runners);
  listed.target = acme_org;
  auto runners = call(gh, listed).runners;
  ASSERT_EQ(runners.size(), 1u);
  EXPECT_EQ(runners[0].name, "reusable-1");
  EXPECT_FALSE(runners[0].busy);
  online(gh, "i-8", secret_string{"jit_never_issued"});
  EXPECT_EQ(github_stats(gh)["github_unknown_registration"], 1);
}

TEST_F(SimGithubTest, ListRunnersPaginatesByHundred) {
  auto gh = start();
  auto token = mint(gh);
  for (int i = 0; i < 150; ++i)
    ASSERT_EQ(call(gh, jit(token, acme_org, "r-" + std::to_string(i), {"linux"})).status,
              201);
  auto page = with(token, github_op::list_runners);
  page.target = acme_org;
  auto first = call(gh, page);
  EXPECT_EQ(first.runners.size(), 100u);
  EXPECT_TRUE(first.has_next_page);
  EXPECT_EQ(first.runners[0].status, "offline");
  page.page = 2;
  auto second = call(gh, page);
  EXPECT_EQ(second.runners.size(), 50u);
  EXPECT_FALSE(second.has_next_page);
  EXPECT_EQ(second.runners[0].id, 101);
  EXPECT_EQ(call(gh, jit(token, acme_org, "r-0", {"linux"})).status, 409);
}

TEST_F(SimGithubTest, PrimaryLimitRunsOutAndResets) {
  sim.github_hourly_limit = 3;
  sim.token_ttl = 2h; // outlives the window
  auto gh = start();
  auto start_time = sys.clock().now().time_since_epoch();
  auto token = mint(gh);
  EXPECT_EQ(token.rate.remaining, 2);
  EXPECT_EQ(token.rate.limit, 3);
  EXPECT_EQ(token.rate.reset_at, start_time + 1h);
  EXPECT_EQ(call(gh, job_query(token, acme_web, 1)).rate.remaining, 1);
  EXPECT_EQ(call(gh, job_query(token, acme_web, 1)).rate.remaining, 0);
  auto exhausted = call(gh, job_query(token, acme_web, 1));
  EXPECT_EQ(exhausted.status, 403);
  EXPECT_EQ(exhausted.message, "API rate limit exceeded");
  EXPECT_EQ(exhausted.rate.remaining, 0);
  EXPECT_EQ(exhausted.retry_after, 0s);
  EXPECT_EQ(exhausted.rate.reset_at, start_time + 1h);
  advance(59min);
  EXPECT_EQ(call(gh, job_query(token, acme_web, 1)).status, 403);
  advance(1min);
  auto fresh = call(gh, job_query(token, acme_web, 1));
  EXPECT_EQ(fresh.status, 404);
  EXPECT_EQ(fresh.rate.remaining, 2);
  EXPECT_EQ(fresh.rate.reset_at, start_time + 2h);
  EXPECT_EQ(github_stats(gh)["github_403"], 2);
}

TEST_F(SimGithubTest, SecondaryWriteLimitAsksToRetryWhenASlotFrees) {
  sim.github_writes_per_minute = 2;
  auto gh = start();
  // A token mint is made with the App's JWT: not the installation's write.
  auto token = mint(gh);
  EXPECT_EQ(call(gh, jit(token, acme_org, "r-0", {"linux"})).status, 201); // 0 s
  advance(10s);
  EXPECT_EQ(call(gh, jit(token, acme_org, "r-1", {"linux"})).status, 201); // 10 s
  auto limited = call(gh, jit(token, acme_org, "r-2", {"linux"}));
  EXPECT_EQ(limited.status, 403);
  EXPECT_EQ(limited.message, "You have exceeded a secondary rate limit");
  EXPECT_EQ(limited.retry_after, 50s);
  EXPECT_EQ(call(gh, job_query(token, acme_web, 1)).status, 404); // reads pass
  advance(50s);
  EXPECT_EQ(call(gh, jit(token, acme_org, "r-2", {"linux"})).status, 201);
  auto s = github_stats(gh);
  EXPECT_EQ(s["github_403"], 1);
  EXPECT_EQ(s["generate_jit_config 403"], 1);
}

TEST_F(SimGithubTest, InjectedFaultsHitEveryCallWhileActive) {
  auto gh = start();
  auto token = mint(gh);
  inject(gh, sim_fault{"github_5xx", "", 1.0, 30s});
  EXPECT_EQ(mint(gh).status, 502);
  EXPECT_EQ(call(gh, job_query(token, acme_web, 1)).status, 502);
  advance(30s);
  EXPECT_EQ(mint(gh).status, 201);
  inject(gh, make_job(1, acme_web, {"linux"}));
  inject(gh, sim_fault{"github_404", "", 1.0, 30s});
  EXPECT_EQ(call(gh, job_query(token, acme_web, 1)).status, 404);
  EXPECT_EQ(mint(gh).status, 201); // token mints are spared
  advance(30s);
  EXPECT_EQ(call(gh, job_query(token, acme_web, 1)).job_status, "queued");
  inject(gh, sim_fault{"github_rate_limit", "", 1.0, 30s});
  auto limited = call(gh, job_query(token, acme_web, 1));
  EXPECT_EQ(limited.status, 403);
  EXPECT_EQ(limited.retry_after, 60s);
  EXPECT_EQ(limited.message, "You have exceeded a secondary rate limit");
  auto s = github_stats(gh);
  EXPECT_EQ(s["create_installation_token 502"], 1);
  EXPECT_EQ(s["get_job 502"], 1);
  EXPECT_EQ(s["get_job 404"], 1);
  EXPECT_EQ(s["get_job 403"], 1);
  EXPECT_EQ(s["github_403"], 1);
}

TEST_F(SimGithubTest, EndToEndWithTheSimulatedCloud) {
  auto gh = start();
  auto cloud = stop_at_teardown(sys.spawn(sim_cloud, sim, "/ghscale/runners", gh, stats));
  auto sink = start_sink();
  self->send(gh, atom::connect_v, sink, cloud);
  sched.run();
  inject(gh, make_job(42, acme_web, {"linux"}, 2min));
  auto token = mint(gh);
  auto reg = call(gh, jit(token, acme_org, "runner-42", {"linux"}));
  fleet_request launch;
  launch.client_token = "launch-1";
  launch.instance_types = {"m5.large"};
  launch.count = 1;
  auto fleet = ask<fleet_result>(cloud, atom::fleet_v, launch);
  ASSERT_EQ(fleet.instances.size(), 1u);
  auto id = fleet.instances[0].instance_id;
  ask<std::string>(cloud, atom::put_param_v,
                   parameter{"/ghscale/runners/" + id, reg.secret,
                             {{"ghscale:job", "42#1"}}});
  drain(sink);
  advance(sim.boot_delay);
  EXPECT_EQ(call(gh, job_query(token, acme_web, 42)).job_status, "in_progress");
  advance(2min);
  EXPECT_EQ(call(gh, job_query(token, acme_web, 42)).job_status, "completed");
  auto events = drain(sink);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].action, job_action::in_progress);
  EXPECT_EQ(events[1].action, job_action::completed);
  auto all = ask<instance_list>(cloud, atom::describe_v, instance_filter{{}, true});
  ASSERT_EQ(all.instances.size(), 1u);
  EXPECT_EQ(all.instances[0].state, instance_state::terminated);
  auto cloud_stats = ask<api_calls>(cloud, atom::stats_v);
  stats_map c{cloud_stats.by_kind.begin(), cloud_stats.by_kind.end()};
  EXPECT_EQ(c["instances_running"], 0);
  EXPECT_EQ(c["runners_started"], 1);
  EXPECT_EQ(c["job_tag_repeats"], 0);
}

TEST_F(SimGithubTest, SameSeedGivesTheSameRun) {
  auto run = [this] {
    auto gh = start();
    auto token = mint(gh);
    inject(gh, sim_fault{"github_5xx", "", 0.5, 1h});
    for (int i = 0; i < 40; ++i)
      call(gh, jit(token, acme_org, "r-" + std::to_string(i), {"linux"}));
    return github_stats(gh);
  };
  auto first = run();
  auto second = run();
  EXPECT_EQ(first, second);
  EXPECT_GT(first["generate_jit_config 502"], 0);
  EXPECT_GT(first["generate_jit_config 201"], 0);
  EXPECT_EQ(first["generate_jit_config 502"] + first["generate_jit_config 201"], 40);
}

TEST_F(SimGithubTest, LatencyDelaysResponsesButNotTheirEffects) {
  sim.github_latency = 3s;
  auto gh = start();
  github_request token_request;
  token_request.op = github_op::create_installation_token;
  token_request.installation_id = 1;
  token_request.credential = secret_string{"app-jwt"};
  auto minted = spawn_requester<github_response>(gh, 1h, atom::call_v, token_request);
  token_request.credential = secret_string{};
  auto refused = spawn_requester<github_response>(gh, 1h, atom::call_v, token_request);
  sched.run();
  EXPECT_FALSE(minted->has_value());
  EXPECT_FALSE(refused->has_value());
  auto s = github_stats(gh); // served on arrival
  EXPECT_EQ(s["create_installation_token 201"], 1);
  EXPECT_EQ(s["create_installation_token 401"], 1);
  advance(2s);
  EXPECT_FALSE(minted->has_value());
  EXPECT_FALSE(refused->has_value());
  advance(1s);
  ASSERT_TRUE(minted->has_value());
  ASSERT_TRUE(**minted) << sys.render((*minted)->error());
  EXPECT_EQ((*minted)->value().status, 201);
  EXPECT_EQ((*minted)->value().secret.value, "ghs_sim_1");
  ASSERT_TRUE(refused->has_value());
  ASSERT_TRUE(**refused) << sys.render((*refused)->error());
  EXPECT_EQ((*refused)->value().status, 401);
  EXPECT_EQ((*refused)->value().message, "Bad credentials");
}

} // namespace

// -- instances going away, time-to-start ---------------------------------------

TEST_F(SimGithubTest, WebhooksCarryQueuedAndStartedTimesAndTheWaitIsMeasured) {
  auto gh = start();
  auto sink = start_sink();
  self->send(gh, atom::connect_v, sink, start_recording_cloud());
  sched.run();
  advance(1min); // the actor clock stands for Unix time: away from its epoch
  // RFC 3339 in the payload has whole seconds.
  caf::timespan queued_at = std::chrono::duration_cast<std::chrono::seconds>(
    sys.clock().now().time_since_epoch());
  inject(gh, make_job(7, acme_web, {"self-hosted"}, 2min));
  drain(sink);
  advance(45s);
  auto token = mint(gh);
  auto reg = call(gh, jit(token, acme_org, "runner-1", {"self-hosted"}));
  online(gh, "i-1", reg.secret);
  auto started = drain(sink);
  ASSERT_EQ(started.size(), 1u);
  EXPECT_EQ(started[0].created_at, queued_at);
  EXPECT_EQ(started[0].started_at, queued_at + 45s);
  advance(2min);
  auto completed = drain(sink);
  ASSERT_EQ(completed.size(), 1u);
  EXPECT_EQ(completed[0].created_at, queued_at);
  EXPECT_EQ(completed[0].started_at, queued_at + 45s);
  EXPECT_EQ(github_stats(gh)["wait_ms 7#1"], 45000);
}

TEST_F(SimGithubTest, GoneInstancesFailTheirJobAndLeaveGhostRegistrations) {
  auto gh = start();
  auto sink = start_sink();
  self->send(gh, atom::connect_v, sink, start_recording_cloud());
  sched.run();
  auto token = mint(gh);
  auto busy = call(gh, jit(token, acme_org, "busy", {"self-hosted"}));
  auto idle = call(gh, jit(token, acme_org, "idle", {"self-hosted", "gpu"}));
  auto never = call(gh, jit(token, acme_org, "never", {"self-hosted"}));
  inject(gh, make_job(1, acme_web, {"self-hosted"}, 10min));
  online(gh, "i-1", busy.secret);
  online(gh, "i-2", idle.secret);
  drain(sink);
  auto s = github_stats(gh);
  EXPECT_EQ(s["registered_on i-1"], 1);
  EXPECT_EQ(s["registered_on i-2"], 1);
  EXPECT_EQ(s["ghost_registrations"], 0);
  // i-1 is reclaimed mid-job, i-2 while idle, i-3 before it ever booted.
  self->send(gh, atom::terminate_v, std::string{"i-1"}, busy.secret);
  self->send(gh, atom::terminate_v, std::string{"i-2"}, idle.secret);
  self->send(gh, atom::terminate_v, std::string{"i-3"}, never.secret);
  sched.run();
  auto failed = drain(sink);
  ASSERT_EQ(failed.size(), 1u);
  EXPECT_EQ(failed[0].action, job_action::completed);
  EXPECT_EQ(failed[0].key, (job_key{1, 1}));
  EXPECT_EQ(failed[0].runner_name, "busy");
  // It started, so it is not queued again, and nothing more happens to it.
  EXPECT_EQ(call(gh, job_query(token, acme_web, 1)).job_status, "completed");
  advance(10min);
  EXPECT_TRUE(drain(sink).empty());
  // The config of the instance that never booted is worthless now.
  online(gh, "i-3", never.secret);
  s = github_stats(gh);
  EXPECT_EQ(s["jobs_interrupted"], 1);
  EXPECT_EQ(s["jobs_completed"], 0);
  EXPECT_EQ(s["jobs_never_started"], 0);
  EXPECT_EQ(s["jobs_running"], 0);
  EXPECT_EQ(s["github_unknown_registration"], 1);
  EXPECT_EQ(s["ghost_registrations"], 3);
  EXPECT_EQ(s.count("registered_on i-1") + s.count("registered_on i-2"), 0u);
  // The registrations stay, offline, and take no jobs ...
  auto list = with(token, github_op::list_runners);
  list.target = acme_org;
  auto listed = call(gh, list);
  ASSERT_EQ(listed.runners.size(), 3u);
  for (auto& r : listed.runners) {
    EXPECT_EQ(r.status, "offline") << r.name;
    EXPECT_FALSE(r.busy) << r.name;
  }
  inject(gh, make_job(2, acme_web, {"self-hosted"}));
  EXPECT_EQ(call(gh, job_query(token, acme_web, 2)).job_status, "queued");
  // ... until someone deletes them.
  for (auto& r : listed.runners) {
    auto del = with(token, github_op::delete_runner);
    del.runner_id = r.id;
    EXPECT_EQ(call(gh, del).status, 204) << r.name;
  }
  EXPECT_EQ(github_stats(gh)["ghost_registrations"], 0);
  // An instance GitHub never heard of changes nothing.
  self->send(gh, atom::terminate_v, std::string{"i-9"}, secret_string{});
  sched.run();
  EXPECT_EQ(github_stats(gh)["ghost_registrations"], 0);
}
