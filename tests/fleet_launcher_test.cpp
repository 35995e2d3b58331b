// The fleet launcher against scripted EC2, SSM and GitHub App / installation
// client mocks (typed, in process), in virtual time.
#include "actors/fleet_launcher.hpp"
#include "tests/actor_test.hpp"

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

// -- scripted backends -----------------------------------------------------------

struct backend_script {
  /// Answers CreateFleet call number `index`; default: fills everything.
  std::function<caf::expected<fleet_result>(const fleet_request&, size_t index)>
    fleet;
  std::vector<fleet_request> fleet_calls;
  std::vector<caf::timespan> fleet_call_times;
  std::vector<std::string> terminated;
  std::vector<parameter> parameters;
  std::string failing_parameter; // PutParameter of this name fails
  std::vector<registration_request> registrations;
  std::string failing_runner;    // registration of this runner name fails
  caf::error failing_with = caf::make_error(errc::backend_failure,
                                            "generate_jit_config: 502 after 6 attempts");
  std::vector<int64_t> client_lookups;
  int next_instance = 1;
  std::vector<instance_tags> tagged; // CreateTags calls
  /// What the pool's ledger was told, runner by runner, as each came up.
  std::vector<std::pair<uint64_t, launched_runner>> recorded;

  fleet_instance instance(capacity_type capacity) {
    return {"i-" + std::to_string(next_instance++), "m5.large", "subnet-a",
            capacity};
  }

  fleet_result fill(const fleet_request& req, int32_t count) {
    fleet_result res;
    for (int32_t i = 0; i < count; ++i)
      res.instances.push_back(instance(req.capacity));
    return res;
  }
};

ec2_actor::behavior_type mock_ec2(ec2_actor::pointer self,
                                  std::shared_ptr<backend_script> script) {
  return {
    [=](atom::fleet, fleet_request& req) -> caf::result<fleet_result> {
      auto index = script->fleet_calls.size();
      script->fleet_calls.push_back(req);
      script->fleet_call_times.push_back(self->clock().now().time_since_epoch());
      if (script->fleet)
        return script->fleet(req, index);
      return script->fill(req, req.count);
    },
    [](atom::describe, instance_filter&) { return instance_list{}; },
    [=](atom::terminate, instance_ids& ids) {
      batch_result res;
      for (auto& id : ids.ids) {
        script->terminated.push_back(id);
        res.succeeded.push_back(id);
      }
      return res;
    },
    [=](atom::add_tags, const instance_tags& tags) {
      script->tagged.push_back(tags);
      return batch_result{tags.ids, {}};
    },
  };
}

ssm_actor::behavior_type mock_ssm(std::shared_ptr<backend_script> script) {
  return {
    [=](atom::put_param, parameter& param) -> caf::result<std::string> {
      if (param.name == script->failing_parameter)
        return caf::make_error(errc::throttled, "PutParameter: ThrottlingException");
      script->parameters.push_back(param);
      return param.name;
    },
    [](atom::del_param, std::string& name) { return name; },
  };
}

installation_client_actor::behavior_type
mock_client(std::shared_ptr<backend_script> script) {
  return {
    [=](atom::registration,
        registration_request& req) -> caf::result<runner_registration> {
      script->registrations.push_back(req);
      if (req.runner_name == script->failing_runner)
        return script->failing_with;
      return runner_registration{static_cast<int64_t>(script->registrations.size()),
                                 secret_string{"jit-" + req.runner_name}};
    },
    [](atom::job_status, job_status_query&) { return std::string{"queued"}; },
    [](atom::runners, repository_ref&) { return runner_list{}; },
    [](atom::unregister, runner_removal& x) { return x.runner_id; },
    [](atom::admit, const registration_admission& req) {
      return admitted_registrations{req.count, 1, caf::timespan{0}};
    },
    [](atom::release, uint64_t) {},
    [](atom::drain) { return true; },
    [](atom::budget) { return budget_status{}; },
    [](atom::flush) {},
  };
}

launch_recorder_actor::behavior_type
mock_recorder(std::shared_ptr<backend_script> script) {
  return {
    [=](atom::observe, uint64_t reservation, const launched_runner& up) {
      script->recorded.emplace_back(reservation, up);
    },
  };
}

github_app_actor::behavior_type mock_app(github_app_actor::pointer self,
                                         std::shared_ptr<backend_script> script) {
  auto client = self->spawn<caf::linked>(mock_client, script);
  return {
    [=](atom::client, int64_t installation) {
      script->client_lookups.push_back(installation);
      return client;
    },
    [](atom::drain, caf::timespan) { return true; },
    [](atom::mint, int64_t) -> caf::result<github_response> {
      return caf::make_error(caf::sec::unexpected_message);
    },
    [](atom::lookup, const repository_ref&) -> caf::result<int64_t> {
      return caf::make_error(caf::sec::unexpected_message);
    },
  };
}

// -- fixture ------------------------------------------------------------------------

class FleetLauncherTest : public test::actor_test {
protected:
  FleetLauncherTest() {
    pool.name = "linux";
    pool.github_app = "ci";
    pool.labels = {"self-hosted", "linux"};
    pool.runner_group = "builders";
    pool.mode = runner_mode::ephemeral;
    pool.instance_types = {"m5.large", "m6i.large"};
    pool.subnets = {"subnet-a", "subnet-b"};
    pool.launch_template = "lt-runner";
    pool.capacity = capacity_type::spot;
    pool.on_demand_failover = {"InsufficientInstanceCapacity"};
  }

  fleet_launcher_actor start_launcher() {
    auto ec2 = stop_at_teardown(sys.spawn(mock_ec2, backend));
    auto ssm = stop_at_teardown(sys.spawn(mock_ssm, backend));
    auto app = stop_at_teardown(sys.spawn(mock_app, backend));
    auto ledger = stop_at_teardown(sys.spawn(mock_recorder, backend));
    return stop_at_teardown(
      sys.spawn(fleet_launcher, std::vector<pool_config>{pool}, aws, timeouts, ec2, ssm,
                std::map<std::string, github_app_actor>{{"ci", app}},
                std::map<std::string, launch_recorder_actor>{{pool.name, ledger}},
                stats, uint64_t{9}));
  }

  caf::expected<launch_result> launch(fleet_launcher_actor launcher,
                                      launch_request req,
                                      caf::timespan budget = 1min) {
    self->send(launcher, atom::launch_v, std::move(req));
    advance(budget);
    return next_reply<launch_result>();
  }

  /// A runner for `job` registering at org "octo" on installation 7.
  static runner_spec spec_for(job_key job) {
    runner_spec spec;
    spec.job = job;
    spec.target = repository_ref{"octo", "", owner_type::organization};
    spec.installation_id = 7;
    return spec;
  }

  /// `n` specs: jobs 100#1, 101#1, ... on installation 7.
  launch_request request_for(int n, std::string pool_name = "linux") {
    launch_request req{std::move(pool_name), "tok-abc", {}};
    for (int i = 0; i < n; ++i)
      req.runners.push_back(spec_for(job_key{100 + i, 1}));
    return req;
  }

  static std::vector<int32_t> launched_indexes(const launch_result& res) {
    std::vector<int32_t> out;
    for (auto& x : res.launched)
      out.push_back(x.spec_index);
    return out;
  }

  static std::vector<int32_t> failed_indexes(const launch_result& res) {
    std::vector<int32_t> out;
    for (auto& x : res.failed)
      out.push_back(x.spec_index);
    return out;
  }

  pool_config pool;
  aws_config aws;
  timeouts_config timeouts;
  metrics_ptr stats = std::make_shared<metrics>();
  std::shared_ptr<backend_script> backend = std::make_shared<backend_script>();
};

TEST_F(FleetLauncherTest, FullFillLaunchesEveryRunner) {
  auto launcher = start_launcher();
  auto req = request_for(2);
  req.runners.push_back(spec_for(job_key{0, 0})); // an idle top-up
  auto res = launch(launcher, req);
  ASSERT_TRUE(res) << describe(res.error());
  EXPECT_TRUE(res->failed.empty());
  ASSERT_EQ(launched_indexes(*res), (std::vector<int32_t>{0, 1, 2}));
  for (int i = 0; i < 3; ++i) {
    auto& runner = res->launched[i];
    auto id = "i-" + std::to_string(i + 1);
    EXPECT_EQ(runner.job, req.runners[i].job);
    EXPECT_EQ(runner.instance_id, id);
    EXPECT_EQ(runner.instance_type, "m5.large");
    EXPECT_EQ(runner.capacity, capacity_type::spot);
    EXPECT_EQ(runner.runner_name, "linux-" + id);
    EXPECT_GT(runner.runner_id, 0);
  }
  ASSERT_EQ(backend->fleet_calls.size(), 1u);
  auto& call = backend->fleet_calls[0];
  EXPECT_EQ(call.client_token, "tok-abc");
  EXPECT_EQ(call.launch_template, "lt-runner");
  EXPECT_EQ(call.instance_types, pool.instance_types);
  EXPECT_EQ(call.subnets, pool.subnets);
  EXPECT_EQ(call.capacity, capacity_type::spot);
  EXPECT_EQ(call.count, 3);
  // One registration target for every runner: CreateFleet tags it, so the
  // reaper finds the registrations even after a restart.
  EXPECT_EQ(call.tags, (std::vector<tag>{{"ghscale:pool", "linux"},
                                         {"ghscale:token", "tok-abc"},
                                         {"ghscale:owner", "octo"},
                                         {"ghscale:owner-type", "Organization"},
                                         {"ghscale:installation", "7"}}));
  EXPECT_TRUE(backend->tagged.empty());
  ASSERT_EQ(backend->registrations.size(), 3u);
  auto& reg = backend->registrations[0];
  EXPECT_EQ(reg.runner_name, "linux-i-1");
  EXPECT_EQ(reg.labels, pool.labels);
  EXPECT_EQ(reg.runner_group, "builders");
  EXPECT_TRUE(reg.ephemeral);
  EXPECT_EQ(reg.target.owner, "octo");
  EXPECT_EQ(backend->client_lookups, (std::vector<int64_t>{7})); // cached after
  ASSERT_EQ(backend->parameters.size(), 3u);
  for (auto& param : backend->parameters) {
    auto id = param.name.substr(std::string{"/ghscale/runners/"}.size());
    EXPECT_EQ(param.name, "/ghscale/runners/" + id);
    EXPECT_EQ(param.value.value, "jit-linux-" + id);
    ASSERT_GE(param.tags.size(), 1u);
    EXPECT_EQ(param.tags[0].key, "ghscale:pool");
    EXPECT_EQ(param.tags[0].value, "linux");
    if (id == "i-1") {
      ASSERT_EQ(param.tags.size(), 2u);
      EXPECT_EQ(param.tags[1].key, "ghscale:job");
      EXPECT_EQ(param.tags[1].value, "100#1");
    }
    if (id == "i-3") { // the idle top-up serves no job
      EXPECT_EQ(param.tags.size(), 1u);
    }
  }
  EXPECT_TRUE(backend->terminated.empty());
  EXPECT_EQ(stats->count("ghscale_launches_total",
                         {{"pool", "linux"}, {"capacity", "spot"}}),
            3);
  EXPECT_EQ(stats->count("ghscale_aws_calls_total", {{"api", "CreateFleet"}}), 1);
  EXPECT_EQ(stats->count("ghscale_aws_calls_total", {{"api", "PutParameter"}}), 3);
}

TEST_F(FleetLauncherTest, PartialFillFailsExactlyTheTail) {
  pool.on_demand_failover.clear();
  backend->fleet = [&](const fleet_request& req, size_t) -> caf::expected<fleet_result> {
    auto res = backend->fill(req, 2);
    res.errors.push_back({"InsufficientInstanceCapacity",
                          "no spot capacity in subnet-b", "m5.large", "subnet-b",
                          capacity_type::spot});
    return res;
  };
  auto launcher = start_launcher();
  auto res = launch(launcher, request_for(4));
  ASSERT_TRUE(res);
  EXPECT_EQ(launched_indexes(*res), (std::vector<int32_t>{0, 1}));
  ASSERT_EQ(failed_indexes(*res), (std::vector<int32_t>{2, 3}));
  for (auto& failure : res->failed) {
    EXPECT_EQ(failure.code, "InsufficientInstanceCapacity");
    EXPECT_EQ(failure.message, "no spot capacity in subnet-b");
  }
  EXPECT_EQ(res->failed[0].job, (job_key{102, 1}));
  EXPECT_EQ(res->failed[1].job, (job_key{103, 1}));
  EXPECT_EQ(backend->fleet_calls.size(), 1u);
  EXPECT_EQ(stats->count("ghscale_launch_failures_total",
                         {{"pool", "linux"}, {"code", "InsufficientInstanceCapacity"}}),
            2);
}

TEST_F(FleetLauncherTest, ShortFillWithoutErrorsCountsAsInsufficientCapacity) {
  backend->fleet = [&](const fleet_request& req, size_t) -> caf::expected<fleet_result> {
    return backend->fill(req, 1);
  };
  auto launcher = start_launcher();
  auto res = launch(launcher, request_for(2));
  ASSERT_TRUE(res);
  EXPECT_EQ(launched_indexes(*res), (std::vector<int32_t>{0}));
  ASSERT_EQ(failed_indexes(*res), (std::vector<int32_t>{1}));
  EXPECT_EQ(res->failed[0].code, "InsufficientInstanceCapacity");
  EXPECT_EQ(backend->fleet_calls.size(), 1u); // no listed error: no failover
}

TEST_F(FleetLauncherTest, SpotShortfallFailsOverToOnDemand) {
  backend->fleet = [&](const fleet_request& req, size_t index)
    -> caf::expected<fleet_result> {
    if (index > 0)
      return backend->fill(req, req.count);
    auto res = backend->fill(req, 1);
    res.errors.push_back({"InsufficientInstanceCapacity", "no spot", "m5.large",
                          "subnet-a", capacity_type::spot});
    return res;
  };
  auto launcher = start_launcher();
  auto res = launch(launcher, request_for(3));
  ASSERT_TRUE(res);
  EXPECT_TRUE(res->failed.empty());
  ASSERT_EQ(launched_indexes(*res), (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(res->launched[0].capacity, capacity_type::spot);
  EXPECT_EQ(res->launched[1].capacity, capacity_type::on_demand);
  EXPECT_EQ(res->launched[2].capacity, capacity_type::on_demand);
  ASSERT_EQ(backend->fleet_calls.size(), 2u);
  auto& failover = backend->fleet_calls[1];
  EXPECT_EQ(failover.client_token, "tok-abc-od");
  EXPECT_EQ(failover.capacity, capacity_type::on_demand);
  EXPECT_EQ(failover.count, 2);
  ASSERT_EQ(failover.tags.size(), 5u);
  EXPECT_EQ(failover.tags[1].value, "tok-abc");
  EXPECT_EQ(stats->count("ghscale_spot_failover_total", {{"pool", "linux"}}), 1);
  EXPECT_EQ(stats->count("ghscale_launches_total",
                         {{"pool", "linux"}, {"capacity", "on-demand"}}),
            2);
}

TEST_F(FleetLauncherTest, UnlistedErrorCodesDoNotFailOver) {
  backend->fleet = [&](const fleet_request& req, size_t) -> caf::expected<fleet_result> {
    auto res = backend->fill(req, 1);
    res.errors.push_back({"InvalidFleetConfiguration", "bad subnet", "", "subnet-b",
                          capacity_type::spot});
    return res;
  };
  auto launcher = start_launcher();
  auto res = launch(launcher, request_for(3));
  ASSERT_TRUE(res);
  EXPECT_EQ(launched_indexes(*res), (std::vector<int32_t>{0}));
  ASSERT_EQ(failed_indexes(*res), (std::vector<int32_t>{1, 2}));
  EXPECT_EQ(res->failed[0].code, "InvalidFleetConfiguration");
  EXPECT_EQ(backend->fleet_calls.size(), 1u);
  EXPECT_EQ(stats->count("ghscale_spot_failover_total", {{"pool", "linux"}}), 0);
}

TEST_F(FleetLauncherTest, ThrottledCallsRetryWithTheSameClientToken) {
  backend->fleet = [&](const fleet_request& req, size_t index)
    -> caf::expected<fleet_result> {
    if (index < 2)
      return caf::make_error(errc::throttled, "CreateFleet: RequestLimitExceeded");
    return backend->fill(req, req.count);
  };
  auto launcher = start_launcher();
  auto res = launch(launcher, request_for(2));
  ASSERT_TRUE(res);
  EXPECT_EQ(launched_indexes(*res), (std::vector<int32_t>{0, 1}));
  ASSERT_EQ(backend->fleet_calls.size(), 3u);
  for (auto& call : backend->fleet_calls) {
    EXPECT_EQ(call.client_token, "tok-abc");
    EXPECT_EQ(call.count, 2);
  }
  auto& at = backend->fleet_call_times;
  EXPECT_GE(at[1] - at[0], 400ms);
  EXPECT_LE(at[1] - at[0], 600ms);
  EXPECT_GE(at[2] - at[1], 800ms);
  EXPECT_LE(at[2] - at[1], 1200ms);
  EXPECT_EQ(stats->count("ghscale_aws_throttles_total", {{"api", "CreateFleet"}}), 2);
  EXPECT_EQ(stats->count("ghscale_aws_calls_total", {{"api", "CreateFleet"}}), 3);
}

TEST_F(FleetLauncherTest, ThrottledEightTimesFailsEverySpec) {
  backend->fleet = [](const fleet_request&, size_t) -> caf::expected<fleet_result> {
    return caf::make_error(errc::throttled, "CreateFleet: RequestLimitExceeded");
  };
  auto launcher = start_launcher();
  auto res = launch(launcher, request_for(3), 2min);
  ASSERT_TRUE(res);
  EXPECT_TRUE(res->launched.empty());
  ASSERT_EQ(failed_indexes(*res), (std::vector<int32_t>{0, 1, 2}));
  for (auto& failure : res->failed)
    EXPECT_EQ(failure.code, "RequestLimitExceeded");
  EXPECT_EQ(backend->fleet_calls.size(), 8u);
  EXPECT_TRUE(backend->registrations.empty());
}

TEST_F(FleetLauncherTest, FailedRegistrationTerminatesItsInstance) {
  backend->failing_runner = "linux-i-2";
  auto launcher = start_launcher();
  auto res = launch(launcher, request_for(3));
  ASSERT_TRUE(res);
  EXPECT_EQ(launched_indexes(*res), (std::vector<int32_t>{0, 2}));
  ASSERT_EQ(failed_indexes(*res), (std::vector<int32_t>{1}));
  EXPECT_EQ(res->failed[0].code, "registration_failed");
  EXPECT_EQ(res->failed[0].job, (job_key{101, 1}));
  EXPECT_NE(res->failed[0].message.find("502 after 6 attempts"), std::string::npos)
    << res->failed[0].message;
  EXPECT_EQ(backend->terminated, (std::vector<std::string>{"i-2"}));
  EXPECT_EQ(backend->parameters.size(), 2u);
  EXPECT_EQ(stats->count("ghscale_launch_failures_total",
                         {{"pool", "linux"}, {"code", "registration_failed"}}),
            1);
}

TEST_F(FleetLauncherTest, RegistrationsCarryTheirAdmissionAndADeadline) {
  test::log_capture captured;
  auto launcher = start_launcher();
  auto req = request_for(2);
  req.runners[0].admission = 9;
  auto t0 = sched.clock().now().time_since_epoch();
  auto res = launch(launcher, req);
  ASSERT_TRUE(res);
  ASSERT_EQ(backend->registrations.size(), 2u);
  EXPECT_EQ(backend->registrations[0].admission, 9u);
  EXPECT_EQ(backend->registrations[1].admission, 0u);
  // What the launch's budget leaves after the SSM hand-off: the client never
  // sends a registration whose caller stopped waiting.
  EXPECT_EQ(backend->registrations[0].deadline, t0 + timeouts.launch - timeouts.aws_call);
  // One line per job that got a runner, naming its instance.
  EXPECT_EQ(test::log_capture::lines_containing("runner configured"), 2u);
  EXPECT_EQ(test::log_capture::lines_containing("job=100#1 instance=i-1"), 1u);
}

TEST_F(FleetLauncherTest, TellsTheLedgerOfEachRunnerAsItIsConfigured) {
  backend->failing_runner = "linux-i-2";
  auto launcher = start_launcher();
  auto req = request_for(3);
  req.reservation = 77;
  auto res = launch(launcher, req);
  ASSERT_TRUE(res);
  ASSERT_EQ(backend->recorded.size(), 2u); // the runner that failed is not
  for (auto& [reservation, up] : backend->recorded)
    EXPECT_EQ(reservation, 77u);
  EXPECT_EQ(backend->recorded[0].second.instance_id, "i-1");
  EXPECT_EQ(backend->recorded[0].second.job, (job_key{100, 1}));
  EXPECT_EQ(backend->recorded[1].second.instance_id, "i-3");
}

TEST_F(FleetLauncherTest, ARegistrationThatTimesOutOrIsDrainedGivesItsJobBack) {
  for (auto [err, code] :
       {std::pair{caf::make_error(errc::timeout, "deadline passed"),
                  std::string{"registration_timeout"}},
        std::pair{caf::make_error(errc::shutting_down, "draining"),
                  std::string{"registration_drained"}}}) {
    test::log_capture captured;
    backend = std::make_shared<backend_script>();
    backend->failing_runner = "linux-i-1";
    backend->failing_with = err;
    auto launcher = start_launcher();
    auto res = launch(launcher, request_for(1));
    ASSERT_TRUE(res);
    ASSERT_EQ(res->failed.size(), 1u);
    EXPECT_EQ(res->failed[0].code, code);
    EXPECT_EQ(res->failed[0].job, (job_key{100, 1}));
    EXPECT_EQ(backend->terminated, (std::vector<std::string>{"i-1"}));
    EXPECT_TRUE(backend->parameters.empty());
    EXPECT_EQ(test::log_capture::lines_containing(
                "instance terminated and job given back"),
              1u);
    EXPECT_EQ(test::log_capture::lines_containing("job=100#1"), 1u);
    EXPECT_EQ(stats->count("ghscale_launch_failures_total",
                           {{"pool", "linux"}, {"code", code}}),
              1);
  }
}

TEST_F(FleetLauncherTest, FailedParameterTerminatesItsInstance) {
  backend->failing_parameter = "/ghscale/runners/i-1";
  auto launcher = start_launcher();
  auto res = launch(launcher, request_for(2));
  ASSERT_TRUE(res);
  EXPECT_EQ(launched_indexes(*res), (std::vector<int32_t>{1}));
  ASSERT_EQ(failed_indexes(*res), (std::vector<int32_t>{0}));
  EXPECT_EQ(res->failed[0].code, "parameter_failed");
  EXPECT_EQ(res->failed[0].message.find("jit-"), std::string::npos);
  EXPECT_EQ(backend->terminated, (std::vector<std::string>{"i-1"}));
}

TEST_F(FleetLauncherTest, UnknownPoolIsAnError) {
  auto launcher = start_launcher();
  auto res = launch(launcher, request_for(1, "gpu"));
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::unknown_pool);
  EXPECT_TRUE(backend->fleet_calls.empty());
}

TEST_F(FleetLauncherTest, TerminateForwardsToEc2) {
  auto launcher = start_launcher();
  self->send(launcher, atom::terminate_v, instance_ids{{"i-9", "i-10"}});
  advance(1s);
  caf::expected<batch_result> res{caf::sec::bad_function_call};
  self->receive([&](batch_result& x) { res = std::move(x); },
                [&](caf::error& err) { res = std::move(err); },
                caf::after(0s) >> [] {});
  ASSERT_TRUE(res);
  EXPECT_EQ(res->succeeded, (std::vector<std::string>{"i-9", "i-10"}));
  EXPECT_EQ(backend->terminated, (std::vector<std::string>{"i-9", "i-10"}));
  EXPECT_EQ(stats->count("ghscale_aws_calls_total", {{"api", "TerminateInstances"}}), 1);
}

} // namespace

TEST_F(FleetLauncherTest, LaunchesForSeveralTargetsTagEachTargetsInstances) {
  auto launcher = start_launcher();
  auto req = request_for(3);
  req.runners[1].target = repository_ref{"acme", "app", owner_type::user};
  req.runners[1].installation_id = 9;
  auto res = launch(launcher, req);
  ASSERT_TRUE(res);
  ASSERT_EQ(res->launched.size(), 3u);
  ASSERT_EQ(backend->fleet_calls.size(), 1u);
  EXPECT_EQ(backend->fleet_calls[0].tags.size(), 2u); // pool and token only
  ASSERT_EQ(backend->tagged.size(), 2u);
  auto by_owner = [&](const std::string& owner) -> const instance_tags& {
    for (auto& t : backend->tagged)
      if (t.tags[0].value == owner)
        return t;
    throw std::logic_error("no CreateTags for " + owner);
  };
  EXPECT_EQ(by_owner("octo").ids, (std::vector<std::string>{"i-1", "i-3"}));
  auto& acme = by_owner("acme/app");
  EXPECT_EQ(acme.ids, (std::vector<std::string>{"i-2"}));
  EXPECT_EQ(acme.tags, (std::vector<tag>{{"ghscale:owner", "acme/app"},
                                         {"ghscale:owner-type", "User"},
                                         {"ghscale:installation", "9"}}));
}

TEST_F(FleetLauncherTest, OnDemandRequestsOverrideASpotPool) {
  auto launcher = start_launcher();
  auto req = request_for(1);
  req.on_demand = true;
  auto res = launch(launcher, req);
  ASSERT_TRUE(res);
  ASSERT_EQ(backend->fleet_calls.size(), 1u);
  EXPECT_EQ(backend->fleet_calls[0].capacity, capacity_type::on_demand);
  EXPECT_EQ(res->launched[0].capacity, capacity_type::on_demand);
}
