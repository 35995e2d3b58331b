#include "actors/fleet_launcher.hpp"

#include "actors/backoff.hpp"
#include "actors/clock.hpp"
#include "actors/ops/log.hpp"

#include <algorithm>
#include <utility>

namespace ghscale {

namespace {

using namespace std::chrono_literals;
using launcher_ptr =
  fleet_launcher_actor::stateful_pointer<fleet_launcher_state>;

constexpr int32_t max_fleet_attempts = 8;
constexpr caf::timespan fleet_retry_base = 500ms;
constexpr caf::timespan fleet_retry_max = 20s;
constexpr double fleet_retry_jitter = 0.2;

void count_aws_call(launcher_ptr self, const char* api) {
  self->state.stats->add("ghscale_aws_calls_total", {{"api", api}});
}

// -- building requests -------------------------------------------------------------

/// Where a runner registers, as instance tags: the reaper lists the
/// registrations there, even after a restart lost the ledger.
std::vector<tag> target_tags(const runner_spec& spec) {
  return {{tag_key::owner, spec.target.full_name()},
          {tag_key::owner_type, to_string(spec.target.type)},
          {tag_key::installation, std::to_string(spec.installation_id)}};
}

/// Whether every runner of a launch registers at the same place, so
/// CreateFleet can tag all its instances with it.
bool one_target(const launch_request& req) {
  return std::all_of(req.runners.begin(), req.runners.end(), [&](auto& spec) {
    return spec.target == req.runners.front().target
           && spec.installation_id == req.runners.front().installation_id;
  });
}

fleet_request fleet_call_for(const pool_config& pool, const launch_request& req) {
  fleet_request call;
  call.client_token = req.client_token;
  call.launch_template = pool.launch_template;
  call.instance_types = pool.instance_types;
  call.subnets = pool.subnets;
  call.capacity = req.on_demand ? capacity_type::on_demand : pool.capacity;
  call.count = static_cast<int32_t>(req.runners.size());
  call.tags = {{tag_key::pool, pool.name}, {tag_key::client_token, req.client_token}};
  if (!req.runners.empty() && one_target(req)) {
    auto targets = target_tags(req.runners.front());
    call.tags.insert(call.tags.end(), targets.begin(), targets.end());
  }
  return call;
}

std::string runner_name(const pool_config& pool, const fleet_instance& instance) {
  return pool.name + "-" + instance.instance_id;
}

registration_request registration_for(const pool_config& pool,
                                       const runner_spec& spec,
                                       std::string runner_name,
                                       caf::timespan deadline) {
  registration_request reg;
  reg.target = spec.target;
  reg.runner_name = std::move(runner_name);
  reg.labels = pool.labels;
  reg.runner_group = pool.runner_group;
  reg.ephemeral = pool.mode == runner_mode::ephemeral;
  reg.admission = spec.admission;
  reg.deadline = deadline;
  return reg;
}

std::vector<tag> parameter_tags(const pool_config& pool, const runner_spec& spec) {
  std::vector<tag> tags{{tag_key::pool, pool.name}};
  if (spec.job.job_id != 0) // idle top-ups serve no job
    tags.push_back({tag_key::job, to_string(spec.job)});
  return tags;
}

// -- settling specs ------------------------------------------------------------------

void finish_launch(launcher_ptr self, uint64_t id) {
  auto i = self->state.launches.find(id);
  auto& attempt = i->second;
  auto& result = attempt.result;
  auto by_index = [](auto& a, auto& b) { return a.spec_index < b.spec_index; };
  std::sort(result.launched.begin(), result.launched.end(), by_index);
  std::sort(result.failed.begin(), result.failed.end(), by_index);
  auto& stats = *self->state.stats;
  for (auto& runner : result.launched)
    stats.add("ghscale_launches_total", {{"pool", attempt.pool->name},
                                         {"capacity", to_string(runner.capacity)}});
  for (auto& failure : result.failed)
    stats.add("ghscale_launch_failures_total",
              {{"pool", attempt.pool->name}, {"code", failure.code}});
  log::info("launch settled",
            {{"pool", attempt.pool->name}, {"token", attempt.request.client_token},
             {"launched", static_cast<uint64_t>(result.launched.size())},
             {"failed", static_cast<uint64_t>(result.failed.size())}});
  attempt.promise.deliver(std::move(result));
  self->state.launches.erase(i);
}

void settle_launched(launcher_ptr self, uint64_t id, size_t index,
                     int64_t runner_id) {
  auto& attempt = self->state.launches.at(id);
  auto& instance = attempt.instances[index];
  auto& spec = attempt.request.runners[index];
  log::info("runner configured",
            {{"pool", attempt.pool->name},
             {"job", spec.job.job_id != 0 ? to_string(spec.job) : "idle"},
             {"instance", instance.instance_id},
             {"runner", runner_name(*attempt.pool, instance)}});
  launched_runner runner;
  runner.spec_index = static_cast<int32_t>(index);
  runner.job = attempt.request.runners[index].job;
  runner.instance_id = instance.instance_id;
  runner.instance_type = instance.instance_type;
  runner.capacity = instance.capacity;
  runner.runner_name = runner_name(*attempt.pool, instance);
  runner.runner_id = runner_id;
  // The ledger knows it now: it may boot and take a job long before the
  // last registration of its launch is through.
  auto ledger = self->state.ledgers.find(attempt.pool->name);
  if (ledger != self->state.ledgers.end() && attempt.request.reservation != 0)
    self->send(ledger->second, atom::observe_v, attempt.request.reservation, runner);
  attempt.result.launched.push_back(std::move(runner));
  if (--attempt.unsettled == 0)
    finish_launch(self, id);
}

void settle_failed(launcher_ptr self, uint64_t id, size_t index,
                   std::string code, std::string message) {
  auto& attempt = self->state.launches.at(id);
  attempt.result.failed.push_back(launch_failure{static_cast<int32_t>(index),
                                             attempt.request.runners[index].job,
                                             std::move(code), std::move(message)});
  if (--attempt.unsettled == 0)
    finish_launch(self, id);
}

/// Terminates an instance no runner will use (its setup failed, or EC2 gave
/// more than asked). A failure is only logged and counted: the reaper finds
/// the orphan by its pool tag.
void terminate_instance(launcher_ptr self, const std::string& pool,
                        const std::string& instance_id) {
  count_aws_call(self, "TerminateInstances");
  auto on_failure = [self, pool, instance_id](const std::string& what) {
    self->state.stats->add("ghscale_launch_terminate_failures_total",
                           {{"pool", pool}});
    log::warn("terminating unused instance failed",
              {{"pool", pool}, {"instance", instance_id}, {"error", what}});
  };
  self
    ->request(self->state.ec2, self->state.timeouts.aws_call, atom::terminate_v,
              instance_ids{{instance_id}})
    .then(
      [=](batch_result& res) {
        if (res.failed.empty())
          log::info("terminated unused instance",
                    {{"pool", pool}, {"instance", instance_id}});
        else
          on_failure(res.failed.front().code + " " + res.failed.front().message);
      },
      [=](caf::error& err) { on_failure(describe(err)); });
}

/// Gives a spec's instance up: terminate it, fail the spec with `code`, so
/// that the scaler gives its job back to the queue. The one place a runner
/// that could not be configured (registration failed, timed out or was
/// refused by a drain; config hand-off failed) is undone.
void abandon(launcher_ptr self, uint64_t id, size_t index, std::string code,
             const caf::error& err) {
  auto& attempt = self->state.launches.at(id);
  auto& instance_id = attempt.instances[index].instance_id;
  auto& spec = attempt.request.runners[index];
  log::warn("runner setup failed, instance terminated and job given back",
            {{"pool", attempt.pool->name},
             {"job", spec.job.job_id != 0 ? to_string(spec.job) : "idle"},
             {"instance", instance_id}, {"code", code},
             {"error", describe(err)}});
  terminate_instance(self, attempt.pool->name, instance_id);
  settle_failed(self, id, index, std::move(code),
                instance_id + ": " + describe(err));
}

// -- registration and hand-off ------------------------------------------------------

/// Hands the looked-up client (or the lookup's error) to every waiter.
void resolve_client(launcher_ptr self, const client_key& key,
                    caf::expected<installation_client_actor> client) {
  auto& waiters = self->state.client_waiters;
  auto i = waiters.find(key);
  auto continuations = std::move(i->second);
  waiters.erase(i);
  for (auto& next : continuations)
    next(client);
}

/// Calls `next` with the installation client: cached, or asked of the App
/// once however many hand-offs wait for it.
void with_client(launcher_ptr self, const client_key& key,
                 client_continuation next) {
  auto& st = self->state;
  if (auto i = st.clients.find(key); i != st.clients.end()) {
    next(i->second);
    return;
  }
  auto& waiting = st.client_waiters[key];
  waiting.push_back(std::move(next));
  if (waiting.size() > 1) // the lookup is under way
    return;
  self
    ->request(st.apps.at(key.first), st.timeouts.github_call, atom::client_v,
              key.second)
    .then(
      [self, key](installation_client_actor& client) {
        self->state.clients[key] = client;
        resolve_client(self, key, client);
      },
      [self, key](caf::error& err) { resolve_client(self, key, std::move(err)); });
}

void put_config(launcher_ptr self, uint64_t id, size_t index,
                runner_registration& reg) {
  auto& st = self->state;
  auto& attempt = st.launches.at(id);
  auto& spec = attempt.request.runners[index];
  parameter param{st.aws.parameter_prefix + "/" + attempt.instances[index].instance_id,
                  std::move(reg.config), parameter_tags(*attempt.pool, spec)};
  count_aws_call(self, "PutParameter");
  self->request(st.ssm, st.timeouts.aws_call, atom::put_param_v, std::move(param))
    .then(
      [self, id, index, runner_id = reg.runner_id](std::string&) {
        settle_launched(self, id, index, runner_id);
      },
      [self, id, index](caf::error& err) {
        abandon(self, id, index, "parameter_failed", err);
      });
}

/// The launch failure code of a registration that did not come: a timeout
/// (the budget could not serve it in time), a drain, or any other failure.
std::string registration_failure_code(const caf::error& err) {
  if (err == errc::timeout || err == caf::sec::request_timeout)
    return "registration_timeout";
  if (err == errc::shutting_down)
    return "registration_drained";
  return "registration_failed";
}

/// How long a registration may take: the installation client queues and
/// retries on its own, so it gets what is left of the launch budget after the
/// SSM put, and at least one GitHub call's time.
caf::timespan registration_timeout(launcher_ptr self, const launch_attempt& attempt) {
  auto& timeouts = self->state.timeouts;
  return std::max(attempt.deadline - now(self) - timeouts.aws_call,
                  timeouts.github_call);
}

/// Registers the runner of spec `index` and hands its config to the instance.
void hand_over(launcher_ptr self, uint64_t id, size_t index) {
  auto& attempt = self->state.launches.at(id);
  auto& spec = attempt.request.runners[index];
  auto name = runner_name(*attempt.pool, attempt.instances[index]);
  client_key key{attempt.pool->github_app, spec.installation_id};
  with_client(self, key, [=](caf::expected<installation_client_actor> client) {
    if (!client) {
      abandon(self, id, index, "registration_failed", client.error());
      return;
    }
    auto& attempt = self->state.launches.at(id);
    auto timeout = registration_timeout(self, attempt);
    auto reg = registration_for(*attempt.pool, attempt.request.runners[index], name,
                                now(self) + timeout);
    self->request(*client, timeout, atom::registration_v, std::move(reg))
      .then(
        [self, id, index](runner_registration& res) {
          put_config(self, id, index, res);
        },
        [self, id, index, key](caf::error& err) {
          self->state.clients.erase(key); // the next launch asks the App again
          abandon(self, id, index, registration_failure_code(err), err);
        });
  });
}

/// Instances go to specs in request order; specs left over fail with the
/// code of the shortfall.
/// A launch for several targets could not tag its instances in CreateFleet:
/// one CreateTags per target. A failure is logged; the ledger still knows
/// the targets while it runs.
void tag_targets(launcher_ptr self, const launch_attempt& attempt) {
  if (one_target(attempt.request))
    return;
  // By (where it registers, installation).
  std::map<std::pair<std::string, int64_t>, instance_tags> by_target;
  for (size_t index = 0; index < attempt.instances.size(); ++index) {
    auto& spec = attempt.request.runners[index];
    auto& group = by_target[{spec.target.full_name(), spec.installation_id}];
    group.tags = target_tags(spec);
    group.ids.push_back(attempt.instances[index].instance_id);
  }
  for (auto& [target, group] : by_target) {
    count_aws_call(self, "CreateTags");
    self->request(self->state.ec2, self->state.timeouts.aws_call, atom::add_tags_v,
                  group)
      .then([](const batch_result&) {},
            [self, target = target.first](const caf::error& err) {
              log::warn("tagging instances with their runner target failed",
                        {{"target", target},
                         {"error", self->system().render(err)}});
            });
  }
}

void assign_instances(launcher_ptr self, uint64_t id) {
  auto& attempt = self->state.launches.at(id);
  tag_targets(self, attempt);
  auto specs = attempt.request.runners.size();
  auto filled = attempt.instances.size();
  auto shortfall = attempt.shortfall;
  for (auto index = filled; index < specs; ++index)
    settle_failed(self, id, index, shortfall.code, shortfall.message);
  // Hand-overs answer asynchronously, so the launch settles after the loop.
  for (size_t index = 0; index < filled; ++index)
    hand_over(self, id, index);
}

// -- CreateFleet ---------------------------------------------------------------------

void call_fleet(launcher_ptr self, uint64_t id);

/// Asks for the spot shortfall again as on-demand, if the pool allows it for
/// the error EC2 gave.
bool fail_over(launcher_ptr self, uint64_t id, const fleet_result& res) {
  auto& attempt = self->state.launches.at(id);
  auto& pool = *attempt.pool;
  auto missing = attempt.request.runners.size() - attempt.instances.size();
  auto listed = [&](const fleet_error& err) {
    auto& codes = pool.on_demand_failover;
    return std::find(codes.begin(), codes.end(), err.code) != codes.end();
  };
  if (attempt.failed_over || pool.capacity != capacity_type::spot || missing == 0
      || std::none_of(res.errors.begin(), res.errors.end(), listed))
    return false;
  attempt.failed_over = true;
  attempt.call.capacity = capacity_type::on_demand;
  attempt.call.count = static_cast<int32_t>(missing);
  attempt.call.client_token = attempt.request.client_token + "-od";
  attempt.call_attempts = 0;
  self->state.stats->add("ghscale_spot_failover_total", {{"pool", pool.name}});
  log::info("spot shortfall fails over to on-demand",
            {{"pool", pool.name}, {"missing", static_cast<uint64_t>(missing)},
             {"code", res.errors.front().code}});
  call_fleet(self, id);
  return true;
}

void on_fleet_result(launcher_ptr self, uint64_t id, fleet_result& res) {
  auto& attempt = self->state.launches.at(id);
  auto wanted = static_cast<size_t>(attempt.call.count);
  // More than asked for is EC2's bug, not capacity to keep.
  for (size_t i = wanted; i < res.instances.size(); ++i)
    terminate_instance(self, attempt.pool->name, res.instances[i].instance_id);
  if (res.instances.size() > wanted)
    res.instances.resize(wanted);
  if (res.instances.size() < wanted)
    attempt.shortfall = res.errors.empty()
                      ? fleet_error{"InsufficientInstanceCapacity",
                                    "CreateFleet returned "
                                      + std::to_string(res.instances.size())
                                      + " of " + std::to_string(wanted)
                                      + " instances",
                                    "", "", attempt.call.capacity}
                      : res.errors.front();
  attempt.instances.insert(attempt.instances.end(), res.instances.begin(),
                       res.instances.end());
  log::info("CreateFleet answered",
            {{"pool", attempt.pool->name}, {"capacity", to_string(attempt.call.capacity)},
             {"requested", static_cast<uint64_t>(wanted)},
             {"instances", static_cast<uint64_t>(res.instances.size())},
             {"errors", static_cast<uint64_t>(res.errors.size())}});
  if (!fail_over(self, id, res))
    assign_instances(self, id);
}

bool retryable(const caf::error& err) {
  return err == errc::throttled || err == errc::backend_failure
         || err == errc::timeout || err == caf::sec::request_timeout;
}

void on_fleet_error(launcher_ptr self, uint64_t id, const caf::error& err) {
  auto& st = self->state;
  auto& attempt = st.launches.at(id);
  auto throttled = err == errc::throttled;
  if (throttled)
    st.stats->add("ghscale_aws_throttles_total", {{"api", "CreateFleet"}});
  if (retryable(err) && attempt.call_attempts < max_fleet_attempts) {
    auto delay = jittered_backoff(fleet_retry_base, fleet_retry_max,
                                  attempt.call_attempts, fleet_retry_jitter, st.rng);
    if (now(self) + delay < attempt.deadline) {
      log::warn("CreateFleet retry",
                {{"pool", attempt.pool->name}, {"attempt", attempt.call_attempts},
                 {"delay_ms", to_ms(delay)}, {"error", describe(err)}});
      self->delayed_send(self, delay, atom::flush_v, id);
      return;
    }
  }
  log::error("CreateFleet gave up",
             {{"pool", attempt.pool->name}, {"attempts", attempt.call_attempts},
              {"error", describe(err)}});
  attempt.shortfall = fleet_error{throttled ? "RequestLimitExceeded"
                                        : "CreateFleetFailed",
                              describe(err), "", "", attempt.call.capacity};
  assign_instances(self, id);
}

void call_fleet(launcher_ptr self, uint64_t id) {
  auto& st = self->state;
  auto& attempt = st.launches.at(id);
  ++attempt.call_attempts;
  count_aws_call(self, "CreateFleet");
  self->request(st.ec2, st.timeouts.aws_call, atom::fleet_v, attempt.call)
    .then([self, id](fleet_result& res) { on_fleet_result(self, id, res); },
          [self, id](caf::error& err) { on_fleet_error(self, id, err); });
}

caf::result<launch_result> launch(launcher_ptr self, launch_request& req) {
  auto& st = self->state;
  auto pool = st.pools.find(req.pool);
  if (pool == st.pools.end())
    return caf::make_error(errc::unknown_pool, "launch: no pool " + req.pool);
  if (st.apps.count(pool->second.github_app) == 0)
    return caf::make_error(errc::invalid_config,
                           "launch: pool " + req.pool + " names unknown App "
                             + pool->second.github_app);
  if (req.runners.empty())
    return launch_result{};
  auto id = st.next_launch++;
  auto& attempt = st.launches[id];
  attempt.pool = &pool->second;
  attempt.call = fleet_call_for(pool->second, req);
  attempt.request = std::move(req);
  attempt.promise = self->make_response_promise<launch_result>();
  attempt.deadline = now(self) + st.timeouts.launch;
  attempt.unsettled = attempt.request.runners.size();
  log::info("launch", {{"pool", attempt.pool->name},
                       {"token", attempt.request.client_token},
                       {"count", attempt.call.count},
                       {"capacity", to_string(attempt.call.capacity)}});
  call_fleet(self, id);
  return attempt.promise;
}

} // namespace

fleet_launcher_actor::behavior_type
fleet_launcher(fleet_launcher_actor::stateful_pointer<fleet_launcher_state> self,
               std::vector<pool_config> pools, aws_config aws,
               timeouts_config timeouts, ec2_actor ec2, ssm_actor ssm,
               std::map<std::string, github_app_actor> apps,
               std::map<std::string, launch_recorder_actor> ledgers,
               metrics_ptr stats, uint64_t seed) {
  auto& st = self->state;
  for (auto& pool : pools) {
    auto name = pool.name;
    st.pools.emplace(std::move(name), std::move(pool));
  }
  st.aws = std::move(aws);
  st.timeouts = timeouts;
  st.ec2 = std::move(ec2);
  st.ssm = std::move(ssm);
  st.apps = std::move(apps);
  st.ledgers = std::move(ledgers);
  st.stats = std::move(stats);
  st.rng.seed(seed);
  return {
    [self](atom::launch, launch_request& req) { return launch(self, req); },
    [self](atom::terminate, instance_ids& ids) -> caf::result<batch_result> {
      count_aws_call(self, "TerminateInstances");
      return self->delegate(self->state.ec2, atom::terminate_v, std::move(ids));
    },
    [self](atom::flush, uint64_t id) {
      if (self->state.launches.count(id) != 0)
        call_fleet(self, id);
    },
  };
}

} // namespace ghscale
