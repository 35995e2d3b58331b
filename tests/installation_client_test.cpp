// The installation client against a scripted GitHub (typed mock behind
// github_api_actor) and a scripted App (typed mock behind github_app_actor),
// in virtual time.
#include "actors/installation_client.hpp"
#include "tests/actor_test.hpp"

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

// -- scripted GitHub ------------------------------------------------------------

/// What the mock answers to one call, and after how long.
struct scripted_reply {
  github_response response;
  caf::error error; // a transport failure instead of a response
  caf::timespan latency = 100ms;
};

struct recorded_call {
  github_request request;
  caf::timespan at{0};
};

struct github_script {
  /// Answers call number `index` (0-based); defaults to 200 everywhere.
  std::function<scripted_reply(const github_request&, size_t index)> respond;
  std::vector<recorded_call> calls;
  int in_flight = 0;
  int max_in_flight = 0;
};

github_response ok_response(const github_request& req) {
  github_response res;
  res.status = req.op == github_op::delete_runner ? 204 : 200;
  res.rate = {5000, 4000, 1h};
  res.job_status = "queued";
  if (req.op == github_op::generate_jit_config) {
    res.status = 201;
    res.runner_id = 1000 + static_cast<int64_t>(req.runner_name.size());
    res.secret = {"jit-" + req.runner_name};
  }
  if (req.op == github_op::create_registration_token) {
    res.status = 201;
    res.secret = {"regtoken"};
  }
  return res;
}

scripted_reply ok_reply(const github_request& req) {
  return {ok_response(req), {}, 100ms};
}

/// GitHub's secondary limit for the first `n` calls (403 + retry-after),
/// then 200s.
std::function<scripted_reply(const github_request&, size_t)>
secondary_limit_first(size_t n, caf::timespan retry_after);

scripted_reply status_reply(int32_t status, std::string message = "") {
  scripted_reply out;
  out.response.status = status;
  out.response.rate = {5000, 4000, 1h};
  out.response.message = std::move(message);
  return out;
}

std::function<scripted_reply(const github_request&, size_t)>
secondary_limit_first(size_t n, caf::timespan retry_after) {
  return [=](const github_request& req, size_t index) {
    if (index >= n)
      return ok_reply(req);
    auto reply = status_reply(403, "You have exceeded a secondary rate limit");
    reply.response.retry_after = retry_after;
    return reply;
  };
}

using mock_api_actor = github_api_actor::extend<caf::reacts_to<atom::flush>>;

struct mock_api_state {
  std::multimap<caf::timespan,
                std::pair<caf::typed_response_promise<github_response>,
                          scripted_reply>>
    pending;
  static inline const char* name = "mock_github_api";
};

mock_api_actor::behavior_type
mock_api(mock_api_actor::stateful_pointer<mock_api_state> self,
         std::shared_ptr<github_script> script) {
  return {
    [=](atom::call, github_request& req) -> caf::result<github_response> {
      auto t = self->clock().now().time_since_epoch();
      auto reply = script->respond ? script->respond(req, script->calls.size())
                                   : ok_reply(req);
      script->calls.push_back({req, t});
      script->max_in_flight = std::max(script->max_in_flight, ++script->in_flight);
      auto rp = self->make_response_promise<github_response>();
      self->state.pending.emplace(t + reply.latency,
                                  std::make_pair(rp, std::move(reply)));
      self->delayed_send(self, reply.latency, atom::flush_v);
      return rp;
    },
    [=](atom::flush) {
      auto& pending = self->state.pending;
      auto due = pending.upper_bound(self->clock().now().time_since_epoch());
      for (auto i = pending.begin(); i != due; ++i) {
        --script->in_flight;
        auto& [rp, reply] = i->second;
        if (reply.error)
          rp.deliver(reply.error);
        else
          rp.deliver(reply.response);
      }
      pending.erase(pending.begin(), due);
    },
  };
}

// -- scripted App (the token minter) ----------------------------------------------

struct mint_script {
  int failures_first = 0; // the first N mints fail
  caf::timespan ttl = 1h;
  std::vector<caf::timespan> at;
};

github_app_actor::behavior_type mock_minter(github_app_actor::pointer self,
                                            std::shared_ptr<mint_script> script) {
  return {
    [](atom::client, int64_t) -> caf::result<installation_client_actor> {
      return caf::make_error(caf::sec::unexpected_message);
    },
    [](atom::lookup, const repository_ref&) -> caf::result<int64_t> {
      return caf::make_error(caf::sec::unexpected_message);
    },
    [](atom::drain, caf::timespan) { return true; },
    [=](atom::mint, int64_t) -> caf::result<github_response> {
      auto t = self->clock().now().time_since_epoch();
      script->at.push_back(t);
      auto n = static_cast<int>(script->at.size());
      if (n <= script->failures_first)
        return caf::make_error(errc::backend_failure,
                               "create_installation_token: 502");
      github_response res;
      res.status = 201;
      res.secret = {"tok-" + std::to_string(n)};
      res.expires_at = t + script->ttl;
      return res;
    },
  };
}

// -- fixture ------------------------------------------------------------------------

class InstallationClientTest : public test::actor_test {
protected:
  InstallationClientTest() {
    app.name = "ci";
    app.max_concurrency = 20;
    app.writes_per_minute = 80;
    app.max_retries = 3;
    app.token_refresh_before = 5min;
  }

  installation_client_actor start_client() {
    auto api = stop_at_teardown(sys.spawn(mock_api, github));
    auto minter = stop_at_teardown(sys.spawn(mock_minter, mints));
    return stop_at_teardown(sys.spawn(installation_client, int64_t{7}, app, timeouts,
                                      minter, caf::actor_cast<github_api_actor>(api),
                                      stats, uint64_t{42}));
  }

  caf::timespan now() { return sched.clock().now().time_since_epoch(); }

  /// Every reply waiting in the test actor's mailbox.
  template <class T>
  std::vector<caf::expected<T>> replies() {
    std::vector<caf::expected<T>> out;
    for (bool more = true; more;)
      self->receive([&](T& x) { out.emplace_back(std::move(x)); },
                    [&](caf::error& err) { out.emplace_back(std::move(err)); },
                    caf::after(0s) >> [&] { more = false; });
    return out;
  }

  job_status_query job(int64_t id) {
    return {repository_ref{"octo", "app", owner_type::organization}, id};
  }

  std::vector<github_op> ops() const {
    std::vector<github_op> out;
    for (auto& call : github->calls)
      out.push_back(call.request.op);
    return out;
  }

  test::log_capture captured;
  github_app_config app;
  timeouts_config timeouts;
  metrics_ptr stats = std::make_shared<metrics>();
  std::shared_ptr<github_script> github = std::make_shared<github_script>();
  std::shared_ptr<mint_script> mints = std::make_shared<mint_script>();
};

// -- token cache ----------------------------------------------------------------------

TEST_F(InstallationClientTest, OneMintServesFiftyConcurrentRequests) {
  app.max_concurrency = 100;
  auto client = start_client();
  for (int i = 0; i < 50; ++i)
    self->send(client, atom::job_status_v, job(i));
  advance(1s);
  auto answers = replies<std::string>();
  ASSERT_EQ(answers.size(), 50u);
  for (auto& answer : answers) {
    ASSERT_TRUE(answer) << describe(answer.error());
    EXPECT_EQ(*answer, "queued");
  }
  EXPECT_EQ(mints->at.size(), 1u);
  ASSERT_EQ(github->calls.size(), 50u);
  for (auto& call : github->calls) {
    EXPECT_EQ(call.request.credential.value, "tok-1");
    EXPECT_EQ(call.request.installation_id, 7);
  }
}

TEST_F(InstallationClientTest, RefreshesTheTokenBeforeItExpires) {
  auto client = start_client();
  self->send(client, atom::job_status_v, job(1));
  advance(54min);
  self->send(client, atom::job_status_v, job(2));
  advance(1min + 1s); // now inside the 5 min refresh margin of the 1 h token
  self->send(client, atom::job_status_v, job(3));
  advance(1s);
  EXPECT_EQ(replies<std::string>().size(), 3u);
  ASSERT_EQ(mints->at.size(), 2u);
  EXPECT_EQ(mints->at[1], mints->at[0] + 55min + 1s);
  ASSERT_EQ(github->calls.size(), 3u);
  EXPECT_EQ(github->calls[0].request.credential.value, "tok-1");
  EXPECT_EQ(github->calls[1].request.credential.value, "tok-1");
  EXPECT_EQ(github->calls[2].request.credential.value, "tok-2");
}

TEST_F(InstallationClientTest, UnauthorizedRemintsOnceAndRetries) {
  github->respond = [](const github_request& req, size_t index) {
    return index == 0 ? status_reply(401, "Bad credentials") : ok_reply(req);
  };
  auto client = start_client();
  self->send(client, atom::job_status_v, job(1));
  advance(1s);
  auto answers = replies<std::string>();
  ASSERT_EQ(answers.size(), 1u);
  ASSERT_TRUE(answers[0]) << describe(answers[0].error());
  EXPECT_EQ(mints->at.size(), 2u);
  ASSERT_EQ(github->calls.size(), 2u);
  EXPECT_EQ(github->calls[0].request.credential.value, "tok-1");
  EXPECT_EQ(github->calls[1].request.credential.value, "tok-2");
}

TEST_F(InstallationClientTest, UnauthorizedTwiceIsRejected) {
  github->respond = [](const github_request&, size_t) {
    return status_reply(401, "Bad credentials");
  };
  auto client = start_client();
  self->send(client, atom::job_status_v, job(1));
  advance(1s);
  auto answers = replies<std::string>();
  ASSERT_EQ(answers.size(), 1u);
  ASSERT_FALSE(answers[0]);
  EXPECT_EQ(answers[0].error(), errc::rejected);
  EXPECT_EQ(github->calls.size(), 2u);
  EXPECT_EQ(mints->at.size(), 2u);
}

TEST_F(InstallationClientTest, MintFailuresBackOffThenFailQueuedRequests) {
  mints->failures_first = 100;
  auto client = start_client();
  self->send(client, atom::job_status_v, job(1));
  self->send(client, atom::job_status_v, job(2));
  advance(10min);
  auto answers = replies<std::string>();
  ASSERT_EQ(answers.size(), 2u);
  for (auto& answer : answers) {
    ASSERT_FALSE(answer);
    EXPECT_EQ(answer.error(), errc::backend_failure);
    EXPECT_EQ(describe(answer.error()),
              "backend_failure: token mint failed: backend_failure: "
              "create_installation_token: 502");
  }
  ASSERT_EQ(mints->at.size(), 3u); // app.max_retries consecutive failures
  EXPECT_GE(mints->at[1] - mints->at[0], 800ms);
  EXPECT_LE(mints->at[1] - mints->at[0], 1200ms);
  EXPECT_GE(mints->at[2] - mints->at[1], 1600ms);
  EXPECT_LE(mints->at[2] - mints->at[1], 2400ms);
  EXPECT_TRUE(github->calls.empty());
}

// -- transient failures -----------------------------------------------------------------

TEST_F(InstallationClientTest, ServerErrorsAreRetriedWithBackoff) {
  github->respond = [](const github_request& req, size_t index) {
    return index < 2 ? status_reply(503) : ok_reply(req);
  };
  auto client = start_client();
  self->send(client, atom::job_status_v, job(1));
  advance(1min);
  auto answers = replies<std::string>();
  ASSERT_EQ(answers.size(), 1u);
  ASSERT_TRUE(answers[0]) << describe(answers[0].error());
  EXPECT_EQ(*answers[0], "queued");
  auto& calls = github->calls;
  ASSERT_EQ(calls.size(), 3u);
  // Each retry waits 1 s, then 2 s (+-20 %) after the failed answer (100 ms).
  auto first_wait = calls[1].at - calls[0].at - 100ms;
  auto second_wait = calls[2].at - calls[1].at - 100ms;
  EXPECT_GE(first_wait, 800ms);
  EXPECT_LE(first_wait, 1200ms);
  EXPECT_GE(second_wait, 1600ms);
  EXPECT_LE(second_wait, 2400ms);
  self->send(client, atom::budget_v);
  advance(0s);
  auto budget = replies<budget_status>();
  ASSERT_EQ(budget.size(), 1u);
  EXPECT_EQ(budget[0]->retries, 2);
  EXPECT_EQ(budget[0]->requests_sent, 3);
  EXPECT_EQ(stats->count("ghscale_github_retries_total", {{"op", "get_job"}}), 2);
  EXPECT_EQ(stats->count("ghscale_github_requests_total",
                         {{"op", "get_job"}, {"status", "503"}}),
            2);
}

TEST_F(InstallationClientTest, ServerErrorsFailAfterMaxRetries) {
  github->respond = [](const github_request&, size_t) {
    return status_reply(502);
  };
  auto client = start_client();
  self->send(client, atom::job_status_v, job(1));
  advance(5min);
  auto answers = replies<std::string>();
  ASSERT_EQ(answers.size(), 1u);
  ASSERT_FALSE(answers[0]);
  EXPECT_EQ(answers[0].error(), errc::backend_failure);
  EXPECT_EQ(describe(answers[0].error()),
            "backend_failure: get_job: 502 after 4 attempts");
  EXPECT_EQ(github->calls.size(), 4u); // 1 + app.max_retries
}

TEST_F(InstallationClientTest, TimeoutsAndTransportErrorsAreRetried) {
  github->respond = [](const github_request& req, size_t index) {
    scripted_reply reply = ok_reply(req);
    if (index == 0)
      reply.latency = 1h; // never answers within github_call
    if (index == 1)
      reply.error = caf::make_error(errc::backend_failure, "connection reset");
    return reply;
  };
  auto client = start_client();
  self->send(client, atom::job_status_v, job(1));
  advance(2min);
  auto answers = replies<std::string>();
  ASSERT_EQ(answers.size(), 1u);
  ASSERT_TRUE(answers[0]) << describe(answers[0].error());
  ASSERT_EQ(github->calls.size(), 3u);
  EXPECT_GE(github->calls[1].at - github->calls[0].at, timeouts.github_call);
  EXPECT_EQ(stats->count("ghscale_github_requests_total",
                         {{"op", "get_job"}, {"status", "timeout"}}),
            1);
}

TEST_F(InstallationClientTest, NotFoundRightAfterMintIsRetriedLaterIsBelieved) {
  github->respond = [](const github_request& req, size_t index) {
    // Calls 0 and 1 come within 10 s of the mint, call 3 long after it.
    return index <= 1 || index == 3 ? status_reply(404, "Not Found")
                                    : ok_reply(req);
  };
  auto client = start_client();
  self->send(client, atom::job_status_v, job(1));
  advance(20s);
  auto first = replies<std::string>();
  ASSERT_EQ(first.size(), 1u);
  ASSERT_TRUE(first[0]) << describe(first[0].error());
  ASSERT_EQ(github->calls.size(), 3u); // two 404s within 10 s of the mint
  self->send(client, atom::job_status_v, job(2));
  advance(20s);
  auto second = replies<std::string>();
  ASSERT_EQ(second.size(), 1u);
  ASSERT_FALSE(second[0]);
  EXPECT_EQ(second[0].error(), errc::not_found);
  EXPECT_EQ(github->calls.size(), 4u);
}

TEST_F(InstallationClientTest, UnregisterOfABusyRunnerSaysSo) {
  github->respond = [](const github_request& req, size_t) {
    return req.op == github_op::delete_runner
             ? status_reply(422, "Bad request - Runner is still running a job")
             : ok_reply(req);
  };
  auto client = start_client();
  self->send(client, atom::unregister_v,
             runner_removal{repository_ref{"octo", "", owner_type::organization},
                            55});
  advance(1s);
  auto answers = replies<int64_t>();
  ASSERT_EQ(answers.size(), 1u);
  ASSERT_FALSE(answers[0]);
  EXPECT_EQ(answers[0].error(), errc::runner_busy);
  // Not retried: the runner is kept, the next pass looks again.
  ASSERT_EQ(github->calls.size(), 1u);
  EXPECT_EQ(github->calls[0].request.op, github_op::delete_runner);
}

TEST_F(InstallationClientTest, UnregisterTreatsNotFoundAsGone) {
  github->respond = [](const github_request& req, size_t) {
    return req.op == github_op::delete_runner ? status_reply(404, "Not Found")
                                              : ok_reply(req);
  };
  auto client = start_client();
  self->send(client, atom::job_status_v, job(9));
  // The token is older than 10 s by now: the 404 is believed.
  advance(30s);
  ASSERT_EQ(replies<std::string>().size(), 1u);
  self->send(client, atom::unregister_v,
             runner_removal{repository_ref{"octo", "", owner_type::organization},
                            55});
  advance(1s);
  auto answers = replies<int64_t>();
  ASSERT_EQ(answers.size(), 1u);
  ASSERT_TRUE(answers[0]) << describe(answers[0].error());
  EXPECT_EQ(*answers[0], 55);
  EXPECT_EQ(github->calls.back().request.op, github_op::delete_runner);
  EXPECT_EQ(github->calls.back().request.runner_id, 55);
}

TEST_F(InstallationClientTest, OtherClientErrorsAreRejectedWithGithubsMessage) {
  github->respond = [](const github_request&, size_t) {
    return status_reply(422, "Validation Failed");
  };
  auto client = start_client();
  self->send(client, atom::registration_v,
             registration_request{repository_ref{"octo", "", owner_type::organization},
                                  "pool-i-1", {"linux"}, "Default", true});
  advance(1s);
  auto answers = replies<runner_registration>();
  ASSERT_EQ(answers.size(), 1u);
  ASSERT_FALSE(answers[0]);
  EXPECT_EQ(describe(answers[0].error()),
            "rejected: generate_jit_config: 422 Validation Failed");
  EXPECT_EQ(github->calls.size(), 1u);
}

// -- rate limits ---------------------------------------------------------------------------

TEST_F(InstallationClientTest, RetryAfterPausesEverythingThenSucceeds) {
  app.max_concurrency = 1;
  github->respond = secondary_limit_first(1, 30s);
  auto client = start_client();
  for (int i = 0; i < 3; ++i)
    self->send(client, atom::job_status_v, job(i));
  advance(29s);
  EXPECT_EQ(github->calls.size(), 1u);
  EXPECT_TRUE(replies<std::string>().empty());
  advance(2s);
  auto answers = replies<std::string>();
  ASSERT_EQ(answers.size(), 3u);
  for (auto& answer : answers)
    EXPECT_TRUE(answer);
  auto& calls = github->calls;
  ASSERT_EQ(calls.size(), 4u);
  EXPECT_EQ(calls[1].at, calls[0].at + 100ms + 30s);
  EXPECT_EQ(calls[1].request.job_id, 0); // the paused request goes first
  EXPECT_EQ(calls[2].request.job_id, 1);
  EXPECT_EQ(calls[3].request.job_id, 2);
  self->send(client, atom::budget_v);
  advance(0s);
  EXPECT_EQ(replies<budget_status>()[0]->retries, 0); // not a failure
}

TEST_F(InstallationClientTest, ExhaustedPrimaryLimitHoldsUntilReset) {
  caf::timespan reset_at{0};
  github->respond = [&](const github_request& req, size_t index) {
    auto reply = ok_reply(req);
    if (index == 0) {
      reset_at = now() + 10min;
      reply.response.rate = {5000, 0, reset_at};
    }
    return reply;
  };
  auto client = start_client();
  self->send(client, atom::job_status_v, job(1));
  advance(1s);
  ASSERT_EQ(replies<std::string>().size(), 1u);
  self->send(client, atom::job_status_v, job(2));
  self->send(client, atom::job_status_v, job(3));
  advance(9min);
  EXPECT_EQ(github->calls.size(), 1u);
  self->send(client, atom::budget_v);
  advance(0s);
  auto budget = replies<budget_status>();
  ASSERT_EQ(budget.size(), 1u);
  EXPECT_EQ(budget[0]->primary.remaining, 0);
  EXPECT_EQ(budget[0]->primary.reset_at, reset_at);
  EXPECT_EQ(budget[0]->queued, 2);
  advance(2min);
  ASSERT_EQ(github->calls.size(), 3u);
  EXPECT_EQ(github->calls[1].at, reset_at);
  EXPECT_EQ(replies<std::string>().size(), 2u);
}

TEST_F(InstallationClientTest, PrimaryLimitForbiddenIsRequeuedUntilReset) {
  caf::timespan reset_at{0};
  github->respond = [&](const github_request& req, size_t index) {
    if (index > 0)
      return ok_reply(req);
    reset_at = now() + 5min;
    auto reply = status_reply(403, "API rate limit exceeded");
    reply.response.rate = {5000, 0, reset_at};
    return reply;
  };
  auto client = start_client();
  self->send(client, atom::job_status_v, job(1));
  advance(10min);
  auto answers = replies<std::string>();
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_TRUE(answers[0]);
  ASSERT_EQ(github->calls.size(), 2u);
  EXPECT_EQ(github->calls[1].at, reset_at);
}

TEST_F(InstallationClientTest, NeverMoreThanMaxConcurrencyInFlight) {
  app.max_concurrency = 3;
  github->respond = [](const github_request& req, size_t) {
    auto reply = ok_reply(req);
    reply.latency = 1s;
    return reply;
  };
  auto client = start_client();
  for (int i = 0; i < 10; ++i)
    self->send(client, atom::job_status_v, job(i));
  advance(1500ms);
  EXPECT_EQ(replies<std::string>().size(), 3u);
  self->send(client, atom::budget_v);
  advance(0s);
  auto mid = replies<budget_status>();
  ASSERT_EQ(mid.size(), 1u);
  EXPECT_EQ(mid[0]->in_flight, 3);
  EXPECT_EQ(mid[0]->queued, 4);
  advance(10s);
  EXPECT_EQ(replies<std::string>().size(), 7u);
  EXPECT_EQ(github->max_in_flight, 3);
  EXPECT_EQ(github->calls.size(), 10u);
}

TEST_F(InstallationClientTest, ReplacesARegistrationWhoseAnswerWasLost) {
  // The first JIT call was applied but answered 503; its retry finds the
  // name taken (409): the runner it made is deleted and the call repeated.
  github->respond = [](const github_request& req, size_t index) {
    if (index == 0)
      return status_reply(503);
    if (index == 1)
      return status_reply(409, "Already exists - A runner with the name already exists.");
    auto reply = ok_reply(req);
    if (req.op == github_op::list_runners)
      reply.response.runners = {runner_info{555, req.runner_name, "offline", false, {}}};
    return reply;
  };
  auto client = start_client();
  repository_ref org{"octo", "", owner_type::organization};
  self->send(client, atom::registration_v,
             registration_request{org, "lost-1", {"linux"}, "Default", true});
  advance(1min);
  EXPECT_EQ(ops(), (std::vector<github_op>{
                     github_op::generate_jit_config, github_op::generate_jit_config,
                     github_op::list_runners, github_op::delete_runner,
                     github_op::generate_jit_config}));
  EXPECT_EQ(github->calls[2].request.runner_name, "lost-1"); // the name filter
  EXPECT_EQ(github->calls[3].request.runner_id, 555);
  auto registrations = replies<runner_registration>();
  ASSERT_EQ(registrations.size(), 1u);
  ASSERT_TRUE(registrations[0]) << describe(registrations[0].error());
  EXPECT_EQ(registrations[0]->config.value, "jit-lost-1");
}

TEST_F(InstallationClientTest, AFirstAttemptConflictIsNotReplaced) {
  // A 409 on the first attempt is a name taken by someone else: no delete.
  github->respond = [](const github_request&, size_t) { return status_reply(409, "Already exists"); };
  auto client = start_client();
  repository_ref org{"octo", "", owner_type::organization};
  self->send(client, atom::registration_v,
             registration_request{org, "taken", {"linux"}, "Default", true});
  advance(1min);
  EXPECT_EQ(ops(), std::vector<github_op>{github_op::generate_jit_config});
  auto registrations = replies<runner_registration>();
  ASSERT_EQ(registrations.size(), 1u);
  ASSERT_FALSE(registrations[0]);
  EXPECT_EQ(registrations[0].error(), errc::rejected);
}

TEST_F(InstallationClientTest, LooksANamedRunnerGroupUpOnce) {
  github->respond = [](const github_request& req, size_t) {
    auto reply = ok_reply(req);
    if (req.op == github_op::get_runner_group)
      reply.response.resource_id = req.runner_group == "builders" ? 42 : 0;
    return reply;
  };
  auto client = start_client();
  repository_ref org{"octo", "", owner_type::organization};
  repository_ref repo{"octo", "app", owner_type::organization};
  for (auto name : {"a", "b"})
    self->send(client, atom::registration_v,
               registration_request{org, name, {"linux"}, "builders", true});
  advance(10s);
  // A repository has only its Default group (id 1): nothing to look up.
  self->send(client, atom::registration_v,
             registration_request{repo, "c", {"linux"}, "builders", true});
  self->send(client, atom::registration_v,
             registration_request{org, "d", {"linux"}, "missing", true});
  advance(10s);
  EXPECT_EQ(ops(), (std::vector<github_op>{
                     github_op::get_runner_group, github_op::generate_jit_config,
                     github_op::generate_jit_config, github_op::generate_jit_config,
                     github_op::get_runner_group}));
  EXPECT_EQ(github->calls[1].request.runner_group_id, 42);
  EXPECT_EQ(github->calls[2].request.runner_group_id, 42);
  EXPECT_EQ(github->calls[3].request.runner_group_id, 1);
  auto registrations = replies<runner_registration>();
  ASSERT_EQ(registrations.size(), 4u);
  for (size_t i = 0; i < 3; ++i)
    EXPECT_TRUE(registrations[i]) << i;
  ASSERT_FALSE(registrations[3]);
  EXPECT_EQ(registrations[3].error(), errc::rejected);
  EXPECT_NE(describe(registrations[3].error()).find("runner group 'octo/missing' does not exist"),
            std::string::npos)
    << describe(registrations[3].error());
}

TEST_F(InstallationClientTest, RegistrationsGoBeforeJobChecksBeforeCleanup) {
  app.max_concurrency = 1;
  auto client = start_client();
  repository_ref org{"octo", "", owner_type::organization};
  self->send(client, atom::unregister_v, runner_removal{org, 1});
  for (int i = 0; i < 3; ++i)
    self->send(client, atom::job_status_v, job(i));
  self->send(client, atom::registration_v,
             registration_request{org, "a", {"linux"}, "Default", true});
  self->send(client, atom::registration_v,
             registration_request{org, "b", {"linux"}, "Default", false});
  advance(10s);
  EXPECT_EQ(ops(), (std::vector<github_op>{
                     github_op::generate_jit_config,
                     github_op::create_registration_token, github_op::get_job,
                     github_op::get_job, github_op::get_job,
                     github_op::delete_runner}));
  EXPECT_EQ(github->calls[0].request.runner_name, "a");
  EXPECT_EQ(github->calls[0].request.labels, std::vector<std::string>{"linux"});
  EXPECT_EQ(github->calls[0].request.runner_group, "Default");
  auto registrations = replies<runner_registration>();
  ASSERT_EQ(registrations.size(), 2u);
  EXPECT_EQ(registrations[0]->runner_id, 1001);
  EXPECT_EQ(registrations[0]->config.value, "jit-a");
  EXPECT_EQ(registrations[1]->runner_id, 0); // registration-token mode
  EXPECT_EQ(registrations[1]->config.value, "regtoken");
}

TEST_F(InstallationClientTest, MutationsStayWithinWritesPerMinute) {
  constexpr int limit = 5;
  app.writes_per_minute = limit;
  app.max_concurrency = 100;
  auto client = start_client();
  repository_ref org{"octo", "", owner_type::organization};
  for (int i = 0; i < 3 * limit; ++i)
    self->send(client, atom::registration_v,
               registration_request{org, "r" + std::to_string(i), {}, "", true});
  // Reads are not held back by the write window.
  self->send(client, atom::job_status_v, job(1));
  advance(1s);
  EXPECT_EQ(github->calls.size(), static_cast<size_t>(limit + 1));
  advance(3min);
  EXPECT_EQ(replies<runner_registration>().size(), 3u * limit);
  auto& calls = github->calls;
  std::vector<caf::timespan> writes;
  for (auto& call : calls)
    if (is_mutation(call.request.op))
      writes.push_back(call.at);
  ASSERT_EQ(writes.size(), 3u * limit);
  // GitHub counts 60 s; the client keeps 61 s, so that a write that reaches
  // GitHub faster than the one leaving its window never makes L + 1.
  for (size_t i = 0; i + limit < writes.size(); ++i)
    EXPECT_GE(writes[i + limit] - writes[i], 61s) << "window at write " << i;
  // The window slides: each wave starts the moment the oldest write leaves.
  EXPECT_EQ(writes[limit], writes[0] + 61s);
  EXPECT_EQ(writes[2 * limit], writes[limit] + 61s);
}

TEST_F(InstallationClientTest, ListRunnersFollowsEveryPage) {
  github->respond = [](const github_request& req, size_t) {
    auto reply = ok_reply(req);
    auto page = req.page;
    reply.response.runners = {runner_info{page * 10 + 1, "r", "online", false, {}},
                              runner_info{page * 10 + 2, "r", "offline", true, {}}};
    reply.response.has_next_page = page < 3;
    return reply;
  };
  auto client = start_client();
  self->send(client, atom::runners_v, repository_ref{"octo", "", owner_type::organization});
  advance(5s);
  auto answers = replies<runner_list>();
  ASSERT_EQ(answers.size(), 1u);
  ASSERT_TRUE(answers[0]);
  std::vector<int64_t> ids;
  for (auto& runner : answers[0]->runners)
    ids.push_back(runner.id);
  EXPECT_EQ(ids, (std::vector<int64_t>{11, 12, 21, 22, 31, 32}));
  std::vector<int32_t> pages;
  for (auto& call : github->calls)
    pages.push_back(call.request.page);
  EXPECT_EQ(pages, (std::vector<int32_t>{1, 2, 3}));
}

TEST_F(InstallationClientTest, BudgetReportsWhatWasSpent) {
  app.writes_per_minute = 10;
  auto client = start_client();
  repository_ref org{"octo", "", owner_type::organization};
  self->send(client, atom::registration_v,
             registration_request{org, "a", {}, "", true});
  self->send(client, atom::registration_v,
             registration_request{org, "b", {}, "", true});
  self->send(client, atom::job_status_v, job(1));
  advance(1s);
  self->send(client, atom::budget_v);
  advance(0s);
  auto budget = replies<budget_status>();
  ASSERT_EQ(budget.size(), 1u);
  ASSERT_TRUE(budget[0]);
  EXPECT_EQ(budget[0]->primary.limit, 5000);
  EXPECT_EQ(budget[0]->primary.remaining, 4000);
  EXPECT_EQ(budget[0]->in_flight, 0);
  EXPECT_EQ(budget[0]->queued, 0);
  EXPECT_EQ(budget[0]->write_tokens, 8);
  EXPECT_EQ(budget[0]->requests_sent, 3);
  EXPECT_EQ(budget[0]->retries, 0);
  EXPECT_EQ(budget[0]->token_mints, 1);
  EXPECT_EQ(stats->gauge("ghscale_github_rate_remaining", {{"app", "ci"}}), 4000);
  advance(1min);
  self->send(client, atom::budget_v);
  advance(0s);
  EXPECT_EQ(replies<budget_status>()[0]->write_tokens, 10); // window passed
}

TEST_F(InstallationClientTest, SecretsNeverReachLogsOrErrors) {
  github->respond = [](const github_request& req, size_t index) {
    if (index == 0)
      return status_reply(401, "Bad credentials");
    if (index == 1)
      return status_reply(500);
    return ok_reply(req);
  };
  auto client = start_client();
  self->send(client, atom::registration_v,
             registration_request{repository_ref{"octo", "", owner_type::organization},
                                  "x", {}, "", true});
  advance(10s);
  auto answers = replies<runner_registration>();
  ASSERT_EQ(answers.size(), 1u);
  ASSERT_TRUE(answers[0]);
  EXPECT_EQ(answers[0]->config.value, "jit-x");
  ASSERT_FALSE(captured.lines().empty());
  for (auto& line : captured.lines()) {
    EXPECT_EQ(line.find("tok-"), std::string::npos) << line;
    EXPECT_EQ(line.find("jit-"), std::string::npos) << line;
  }
}

} // namespace

// -- planning registrations against the budget ------------------------------------------

class RegistrationPlanningTest : public InstallationClientTest {
protected:
  RegistrationPlanningTest() {
    app.writes_per_minute = 30;
    app.max_concurrency = 100;
  }

  /// Asked by an actor of its own, so that no registration's reply in the
  /// test actor's mailbox is taken for the answer.
  admitted_registrations admit(const installation_client_actor& client,
                               int32_t count, caf::timespan within = 60s) {
    auto answer = scenario::ask_now<admitted_registrations>(
      sched, planner, client, atom::admit_v, registration_admission{count, within});
    EXPECT_TRUE(answer) << describe(answer.error());
    return answer ? *answer : admitted_registrations{};
  }

  caf::scoped_actor planner{sys};

  registration_request registration(std::string name, uint64_t ticket = 0,
                                    caf::timespan deadline = caf::timespan{0}) {
    registration_request req{org, std::move(name), {"linux"}, "Default", true};
    req.admission = ticket;
    req.deadline = deadline;
    return req;
  }

  size_t writes_sent() const {
    size_t n = 0;
    for (auto& call : github->calls)
      n += is_mutation(call.request.op) ? 1 : 0;
    return n;
  }

  repository_ref org{"octo", "", owner_type::organization};
};

TEST_F(RegistrationPlanningTest, AdmitsWhatTheWriteWindowCanStartInTime) {
  auto client = start_client();
  auto t0 = now();
  // An empty window of 30 a minute starts 30 now; the 31st only when the
  // first of them leaves the 61 s window, past the 60 s asked for.
  auto first = admit(client, 40);
  EXPECT_EQ(first.granted, 30);
  EXPECT_NE(first.ticket, 0u);
  EXPECT_EQ(first.next_at, t0 + 61s);
  // Those 30 are set aside: nothing is left for a second planner.
  auto second = admit(client, 10);
  EXPECT_EQ(second.granted, 0);
  EXPECT_EQ(second.ticket, 0u);
  EXPECT_EQ(second.next_at, t0 + 61s);
  // A window long enough for the next wave admits it.
  auto longer = admit(client, 10, 70s);
  EXPECT_EQ(longer.granted, 10);
}

TEST_F(RegistrationPlanningTest, AdmittedRegistrationsUseTheirTicket) {
  auto client = start_client();
  auto plan = admit(client, 10);
  ASSERT_EQ(plan.granted, 10);
  for (int i = 0; i < 10; ++i)
    self->send(client, atom::registration_v,
               registration("r" + std::to_string(i), plan.ticket));
  advance(1s);
  EXPECT_EQ(replies<runner_registration>().size(), 10u);
  EXPECT_EQ(writes_sent(), 10u);
  // Ten of thirty spent, none set aside any more: twenty left before the
  // first of them leaves the window.
  EXPECT_EQ(admit(client, 25, 30s).granted, 20);
}

TEST_F(RegistrationPlanningTest, ReleasedAndExpiredAdmissionsFreeTheBudget) {
  auto client = start_client();
  auto plan = admit(client, 30);
  ASSERT_EQ(plan.granted, 30);
  self->send(client, atom::release_v, plan.ticket);
  advance(0s);
  auto again = admit(client, 30);
  EXPECT_EQ(again.granted, 30);
  // Not released: its window passes and the units are free again.
  advance(61s);
  EXPECT_EQ(admit(client, 30).granted, 30);
}

TEST_F(RegistrationPlanningTest, RegistrationsQueuedAheadComeFirst) {
  auto client = start_client();
  auto t0 = now();
  for (int i = 0; i < 35; ++i)
    self->send(client, atom::registration_v, registration("q" + std::to_string(i)));
  advance(1s);
  // 30 went at once, 5 wait for the window: a new plan comes after them.
  EXPECT_EQ(writes_sent(), 30u);
  auto plan = admit(client, 10, 30s);
  EXPECT_EQ(plan.granted, 0);
  EXPECT_GE(plan.next_at, t0 + 61s);
  // Within 70 s the window turns over once: 30 slots, 5 of them taken.
  EXPECT_EQ(admit(client, 30, 70s).granted, 25);
}

TEST_F(RegistrationPlanningTest, APauseHoldsAdmissionsBack) {
  github->respond = secondary_limit_first(1, 90s);
  auto client = start_client();
  self->send(client, atom::registration_v, registration("paused"));
  advance(1s);
  auto t = now();
  auto plan = admit(client, 5);
  EXPECT_EQ(plan.granted, 0);
  EXPECT_GE(plan.next_at, t + 89s);
}

TEST_F(RegistrationPlanningTest, ARegistrationPastItsDeadlineIsNeverSent) {
  app.writes_per_minute = 1;
  auto client = start_client();
  self->send(client, atom::registration_v, registration("first"));
  self->send(client, atom::registration_v,
             registration("late", 0, now() + 10s));
  advance(1min + 2s);
  auto answers = replies<runner_registration>();
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_TRUE(answers[0]);
  ASSERT_FALSE(answers[1]);
  EXPECT_EQ(answers[1].error(), errc::timeout);
  EXPECT_NE(describe(answers[1].error()).find("late"), std::string::npos);
  // The write window opened at 61 s; the late registration was not sent.
  EXPECT_EQ(writes_sent(), 1u);
  EXPECT_EQ(stats->count("ghscale_github_expired_total",
                         {{"op", "generate_jit_config"}}),
            1);
}

TEST_F(RegistrationPlanningTest, DrainFailsWhatIsQueuedAndRefusesMore) {
  app.writes_per_minute = 2;
  auto client = start_client();
  for (int i = 0; i < 4; ++i)
    self->send(client, atom::registration_v, registration("d" + std::to_string(i)));
  advance(50ms); // two in flight (100 ms each), two wait for the window
  EXPECT_TRUE(scenario::ask_now<bool>(sched, planner, client, atom::drain_v));
  self->send(client, atom::registration_v, registration("after"));
  advance(1s);
  auto answers = replies<runner_registration>();
  ASSERT_EQ(answers.size(), 5u);
  int ok = 0;
  int drained = 0;
  for (auto& answer : answers) {
    if (answer)
      ++ok;
    else if (answer.error() == errc::shutting_down)
      ++drained;
  }
  EXPECT_EQ(ok, 2);      // those in flight finished
  EXPECT_EQ(drained, 3); // two queued, one refused
  EXPECT_EQ(writes_sent(), 2u);
  EXPECT_EQ(admit(client, 5).granted, 0);
}

TEST_F(RegistrationPlanningTest, OnePauseIsOneLogLine) {
  github->respond = secondary_limit_first(4, 20s);
  auto client = start_client();
  for (int i = 0; i < 4; ++i)
    self->send(client, atom::registration_v, registration("p" + std::to_string(i)));
  advance(1min);
  EXPECT_EQ(replies<runner_registration>().size(), 4u);
  EXPECT_EQ(test::log_capture::lines_containing("github requests paused"), 1u);
}
