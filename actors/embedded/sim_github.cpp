#include "actors/embedded/sim_github.hpp"

#include "messages/text.hpp"
#include "actors/clock.hpp"
#include "actors/ops/log.hpp"
#include "transport/workflow_job.hpp"

#include <algorithm>
#include <cctype>
#include <limits>

namespace ghscale {

namespace {

using github_pointer = sim_github_actor::stateful_pointer<sim_github_state>;
using state = sim_github_state;

constexpr caf::timespan primary_window = std::chrono::hours(1);
constexpr caf::timespan secondary_window = std::chrono::minutes(1);
/// What GitHub asks for when it has had enough of a client.
constexpr caf::timespan injected_retry_after = std::chrono::seconds(60);
/// GitHub gives up on a webhook delivery after 10 seconds.
constexpr caf::timespan webhook_timeout = std::chrono::seconds(10);
/// Registration tokens live one hour.
constexpr caf::timespan registration_token_ttl = std::chrono::hours(1);
constexpr size_t runners_per_page = 100;

const char* secondary_limit_message = "You have exceeded a secondary rate limit";

void count(github_pointer self, const std::string& key, int64_t n = 1) {
  self->state.counters[key] += n;
}

// -- matching ------------------------------------------------------------------

/// GitHub compares logins, repository names and labels case-insensitively.
bool same_target(const repository_ref& a, const repository_ref& b) {
  return iequals(a.owner, b.owner) && iequals(a.repo, b.repo);
}

/// The key of a runner name within its registration target.
std::string name_key(const repository_ref& target, const std::string& name) {
  return ascii_lower(target.owner) + "/" + ascii_lower(target.repo) + "/" + name;
}

/// Adds a runner, indexed by id and by its name within its target.
void add_runner(state& st, state::runner r) {
  st.runner_names.insert(name_key(r.target, r.name));
  auto id = r.id;
  st.runners.emplace(id, std::move(r));
}

void remove_runner(state& st, std::map<int64_t, state::runner>::iterator i) {
  st.runner_names.erase(name_key(i->second.target, i->second.name));
  st.runner_on_instance.erase(i->second.instance_id);
  st.idle_runners.erase(i->first);
  st.runners.erase(i);
}

/// An org-level runner serves every repository of its owner.
bool scope_covers(const repository_ref& target, const repository_ref& repo) {
  return iequals(target.owner, repo.owner)
         && (target.org_level() || iequals(target.repo, repo.repo));
}

bool labels_cover(const std::vector<std::string>& have,
                  const std::vector<std::string>& want) {
  return std::all_of(want.begin(), want.end(), [&](const std::string& label) {
    return std::any_of(have.begin(), have.end(),
                       [&](const std::string& x) { return iequals(x, label); });
  });
}

bool can_run(const state::runner& r, const job_event& ev) {
  return labels_cover(r.labels, ev.labels) && scope_covers(r.target, ev.repository);
}

// -- faults --------------------------------------------------------------------

/// Whether an active fault of this kind hits the current call (seeded draw).
bool fault_hits(github_pointer self, const std::string& kind) {
  auto& faults = self->state.faults;
  auto i = faults.find(kind);
  if (i == faults.end())
    return false;
  if (now(self) >= i->second.until) {
    log::info("sim github fault over", {{"kind", kind}});
    faults.erase(i);
    return false;
  }
  std::bernoulli_distribution hit{std::clamp(i->second.fault.rate, 0.0, 1.0)};
  return hit(self->state.rng);
}

void inject_fault(github_pointer self, const sim_fault& fault) {
  if (fault.kind != "github_5xx" && fault.kind != "github_404"
      && fault.kind != "github_rate_limit") {
    log::warn("sim github ignores unknown fault", {{"kind", fault.kind}});
    return;
  }
  log::info("sim github fault on",
            {{"kind", fault.kind}, {"rate", fault.rate},
             {"seconds", static_cast<int64_t>(
                           std::chrono::duration_cast<std::chrono::seconds>(
                             fault.duration).count())}});
  self->state.faults[fault.kind] = {fault, now(self) + fault.duration};
}

// -- budget --------------------------------------------------------------------

state::installation_budget& budget_of(github_pointer self, int64_t installation) {
  auto& budget = self->state.budgets[installation];
  auto t = now(self);
  if (t >= budget.window_reset_at) {
    budget.window_reset_at = t + primary_window;
    budget.used = 0;
  }
  return budget;
}

rate_limit rate_of(github_pointer self, const state::installation_budget& b) {
  auto limit = self->state.cfg.github_hourly_limit;
  return {limit, std::max<int64_t>(0, limit - b.used), b.window_reset_at};
}

/// How long a call must wait under the secondary limits, or nothing if it
/// may go now (then it is counted).
std::optional<caf::timespan>
secondary_limit_wait(github_pointer self, state::installation_budget& budget,
                     github_op op) {
  if (fault_hits(self, "github_rate_limit"))
    return injected_retry_after;
  auto limit = self->state.cfg.github_writes_per_minute;
  // A token mint is made with the App's JWT, not the installation's token:
  // it does not spend the installation's content-creation budget.
  if (limit <= 0 || !is_mutation(op) || op == github_op::create_installation_token)
    return std::nullopt;
  auto t = now(self);
  auto& writes = budget.recent_writes;
  while (!writes.empty() && writes.front() + secondary_window <= t)
    writes.pop_front();
  if (writes.size() >= static_cast<size_t>(limit))
    return writes.front() + secondary_window - t;
  writes.push_back(t);
  return std::nullopt;
}

/// The installation a call acts for: from the App JWT for token mints,
/// else from a valid installation token.
std::optional<int64_t> authenticate(github_pointer self, const github_request& req) {
  if (req.op == github_op::create_installation_token) {
    if (req.credential.empty())
      return std::nullopt;
    return req.installation_id;
  }
  auto& tokens = self->state.tokens;
  auto i = tokens.find(req.credential.value);
  if (i == tokens.end() || now(self) >= i->second.expires_at)
    return std::nullopt;
  return i->second.installation_id;
}

// -- webhooks ------------------------------------------------------------------

void deliver_webhooks(github_pointer self, std::vector<outgoing_message> bodies) {
  auto& st = self->state;
  auto n = static_cast<int64_t>(bodies.size());
  if (!st.webhook_sink) {
    count(self, "webhooks_undelivered", n);
    return;
  }
  self->request(st.webhook_sink, webhook_timeout, atom::enqueue_v, std::move(bodies))
    .then(
      [=](const batch_result& res) {
        count(self, "webhooks_delivered", static_cast<int64_t>(res.succeeded.size()));
        count(self, "webhooks_failed", static_cast<int64_t>(res.failed.size()));
      },
      [=](const caf::error& err) {
        log::warn("sim github webhook delivery failed",
                  {{"reason", self->system().render(err)}});
        count(self, "webhooks_failed", n);
      });
}

/// The in_progress or completed webhook of a job on a runner.
void deliver_job_webhook(github_pointer self, const state::job& j,
                         job_action action, const std::string& runner_name) {
  auto ev = j.spec.event;
  ev.action = action;
  ev.runner_name = runner_name;
  deliver_webhooks(self, {{to_webhook_payload(ev), caf::timespan{0}}});
}

// -- jobs and runners ------------------------------------------------------------

void start_job(github_pointer self, state::runner& r, uint64_t queued_seq) {
  auto& st = self->state;
  auto key = st.queue.at(queued_seq);
  st.queue.erase(queued_seq);
  auto& j = st.jobs.at(key);
  j.state = state::job_state::in_progress;
  j.ran_on = r.instance_id;
  j.spec.event.started_at = now(self);
  r.job = key;
  st.idle_runners.erase(r.id);
  count(self, "jobs_started");
  // Time-to-start as GitHub measures it: started_at - created_at.
  st.counters["wait_ms " + to_string(key)]
    = to_ms(j.spec.event.started_at - j.spec.event.created_at);
  log::debug("sim github job started",
             {{"job", to_string(key)}, {"runner", r.name}});
  deliver_job_webhook(self, j, job_action::in_progress, r.name);
  self->delayed_send(self, j.spec.run_for, atom::finished_v, r.id);
}

/// Idle runners (lowest id first) take the oldest queued job they can run.
void assign(github_pointer self) {
  auto& st = self->state;
  auto idle = std::vector<int64_t>(st.idle_runners.begin(), st.idle_runners.end());
  for (auto id : idle) {
    if (st.queue.empty())
      return;
    auto& r = st.runners.at(id);
    auto match = std::find_if(st.queue.begin(), st.queue.end(), [&](const auto& q) {
      return can_run(r, st.jobs.at(q.second).spec.event);
    });
    if (match != st.queue.end())
      start_job(self, r, match->first);
  }
}

/// The job on runner `r` is over, counted under `outcome`; its completed
/// webhook goes out.
void end_job(github_pointer self, state::runner& r, const char* outcome) {
  auto& j = self->state.jobs.at(*r.job);
  j.state = state::job_state::completed;
  r.job.reset();
  count(self, outcome);
  deliver_job_webhook(self, j, job_action::completed, r.name);
}

void finish_job(github_pointer self, int64_t runner_id) {
  auto& st = self->state;
  auto i = st.runners.find(runner_id);
  if (i == st.runners.end() || !i->second.job)
    return;
  auto& r = i->second;
  ++r.jobs_run;
  end_job(self, r, "jobs_completed");
  if (!r.ephemeral) {
    st.idle_runners.insert(r.id);
    assign(self);
    return;
  }
  // An ephemeral runner deregisters after its job and its instance stops.
  if (st.cloud && !r.instance_id.empty())
    self->send(st.cloud, atom::finished_v, r.instance_id);
  remove_runner(st, i);
}

void inject_job(github_pointer self, const sim_job& spec) {
  auto& st = self->state;
  auto [pos, fresh] = st.jobs.try_emplace(spec.event.key);
  std::vector<outgoing_message> bodies(1 + std::max(0, spec.duplicates),
                                       outgoing_message{spec.body, caf::timespan{0}});
  // A job injected again only has its webhook delivered again: GitHub never
  // queues the same attempt twice.
  if (fresh) {
    pos->second.spec = spec;
    pos->second.spec.event.created_at = now(self);
    pos->second.queued_seq = st.next_queued++;
    st.queue.emplace(pos->second.queued_seq, spec.event.key);
    count(self, "jobs_queued");
    log::debug("sim github job queued", {{"job", to_string(spec.event.key)}});
  }
  deliver_webhooks(self, std::move(bodies));
  if (fresh)
    assign(self);
}

/// The runner a JIT config or registration token brings online, if any.
std::optional<int64_t> redeem(github_pointer self, const secret_string& secret) {
  auto& st = self->state;
  if (auto i = st.jit_configs.find(secret.value); i != st.jit_configs.end()) {
    auto id = i->second;
    st.jit_configs.erase(i); // a JIT config works once
    if (st.runners.count(id) == 0)
      return std::nullopt; // deleted before its instance booted
    return id;
  }
  auto grant = st.registration_tokens.find(secret.value);
  if (grant == st.registration_tokens.end() || now(self) >= grant->second.expires_at)
    return std::nullopt;
  state::runner r;
  r.id = st.next_runner++;
  r.name = grant->second.runner_name;
  r.labels = grant->second.labels;
  r.target = grant->second.target;
  r.ephemeral = false;
  auto id = r.id;
  add_runner(st, std::move(r));
  return id;
}

void bring_online(github_pointer self, const std::string& instance_id,
                  const secret_string& secret) {
  auto& st = self->state;
  auto id = redeem(self, secret);
  if (!id) {
    log::warn("sim github unknown registration", {{"instance", instance_id}});
    count(self, "github_unknown_registration");
    return;
  }
  auto& r = st.runners.at(*id);
  r.online = true;
  r.instance_id = instance_id;
  st.runner_on_instance[instance_id] = r.id;
  st.idle_runners.insert(r.id);
  count(self, "runners_registered");
  log::debug("sim github runner online",
             {{"runner", r.name}, {"instance", instance_id}});
  assign(self);
}

/// The runner an instance brought online, or the one its still unused JIT
/// config registered; nullptr if none.
state::runner* runner_of_instance(github_pointer self, const std::string& instance_id,
                                  const secret_string& config) {
  auto& st = self->state;
  if (auto i = st.runner_on_instance.find(instance_id); i != st.runner_on_instance.end())
    return &st.runners.at(i->second);
  auto jit = st.jit_configs.find(config.value);
  if (config.empty() || jit == st.jit_configs.end())
    return nullptr;
  auto runner = st.runners.find(jit->second);
  st.jit_configs.erase(jit); // nobody will ever use it now
  if (runner == st.runners.end())
    return nullptr;
  runner->second.instance_id = instance_id;
  return &runner->second;
}

/// The job on a runner whose machine vanished fails: it started, so GitHub
/// does not queue it again.
void fail_job(github_pointer self, state::runner& r) {
  log::info("sim github job failed, its runner's instance is gone",
            {{"job", to_string(*r.job)}, {"runner", r.name}});
  end_job(self, r, "jobs_interrupted");
}

/// An instance went away: its runner goes offline and its registration
/// stays behind (GitHub keeps offline runners until they are deleted).
void instance_gone(github_pointer self, const std::string& instance_id,
                   const secret_string& config) {
  auto& st = self->state;
  auto r = runner_of_instance(self, instance_id, config);
  if (r == nullptr)
    return;
  r->online = false;
  r->instance_gone = true;
  st.idle_runners.erase(r->id);
  st.runner_on_instance.erase(instance_id);
  if (r->job)
    fail_job(self, *r);
}

// -- REST operations ----------------------------------------------------------

void mint_token(github_pointer self, const github_request& req,
                int64_t installation, github_response& res) {
  auto& st = self->state;
  if (installation <= 0) {
    res.status = 404;
    res.message = "Not Found";
    return;
  }
  auto token = "ghs_sim_" + std::to_string(st.next_token++);
  res.status = 201;
  res.expires_at = now(self) + st.cfg.token_ttl;
  st.tokens[token] = {req.installation_id, res.expires_at};
  res.secret = secret_string{std::move(token)};
}

void generate_jit_config(github_pointer self, const github_request& req,
                         github_response& res) {
  auto& st = self->state;
  if (st.runner_names.count(name_key(req.target, req.runner_name)) > 0) {
    res.status = 409;
    res.message = "Already exists - A runner with the name " + req.runner_name
                  + " already exists.";
    return;
  }
  state::runner r;
  r.id = st.next_runner++;
  r.name = req.runner_name;
  r.labels = req.labels;
  r.target = req.target;
  auto secret = "jit_" + std::to_string(st.next_secret++);
  st.jit_configs.emplace(secret, r.id);
  res.status = 201;
  res.runner_id = r.id;
  res.secret = secret_string{std::move(secret)};
  add_runner(st, std::move(r));
  count(self, "jit_configs_created");
}

void create_registration_token(github_pointer self, const github_request& req,
                               github_response& res) {
  auto& st = self->state;
  auto secret = "reg_" + std::to_string(st.next_secret++);
  res.status = 201;
  res.expires_at = now(self) + registration_token_ttl;
  st.registration_tokens[secret] = {req.target, req.runner_name, req.labels,
                                    res.expires_at};
  res.secret = secret_string{std::move(secret)};
}

/// The latest attempt of a job in the requested repository.
const state::job* find_job(github_pointer self, const github_request& req) {
  auto& jobs = self->state.jobs;
  auto i = jobs.upper_bound(job_key{req.job_id, std::numeric_limits<int32_t>::max()});
  if (i == jobs.begin())
    return nullptr;
  --i;
  if (i->first.job_id != req.job_id
      || !same_target(i->second.spec.event.repository, req.target))
    return nullptr;
  return &i->second;
}

void get_job(github_pointer self, const github_request& req, github_response& res) {
  auto j = find_job(self, req);
  if (j == nullptr) {
    res.status = 404;
    res.message = "Not Found";
    return;
  }
  res.status = 200;
  switch (j->state) {
    case state::job_state::queued: res.job_status = "queued"; break;
    case state::job_state::in_progress: res.job_status = "in_progress"; break;
    case state::job_state::completed: res.job_status = "completed"; break;
  }
}

/// The installation of the first job seen for the org (or repository).
void get_installation(github_pointer self, const github_request& req,
                      github_response& res) {
  for (auto& [key, j] : self->state.jobs) {
    auto& repo = j.spec.event.repository;
    if (repo.owner == req.target.owner
        && (req.target.org_level() || repo.repo == req.target.repo)) {
      res.status = 200;
      res.resource_id = j.spec.event.installation_id;
      return;
    }
  }
  res.status = 404;
  res.message = "Not Found";
}

void list_runners(github_pointer self, const github_request& req,
                  github_response& res) {
  std::vector<runner_info> all;
  for (auto& [id, r] : self->state.runners)
    if (same_target(r.target, req.target))
      all.push_back({id, r.name, r.online ? "online" : "offline",
                     r.job.has_value(), r.labels});
  auto first = static_cast<size_t>(std::max(1, req.page) - 1) * runners_per_page;
  auto begin = std::min(first, all.size());
  auto end = std::min(first + runners_per_page, all.size());
  res.status = 200;
  res.runners.assign(all.begin() + begin, all.begin() + end);
  res.has_next_page = end < all.size();
}

void delete_runner(github_pointer self, const github_request& req,
                   github_response& res) {
  auto& st = self->state;
  auto i = st.runners.find(req.runner_id);
  if (i == st.runners.end()) {
    res.status = 404;
    res.message = "Not Found";
    return;
  }
  if (i->second.job) {
    res.status = 422;
    res.message = "Bad request - Runner is still running a job";
    return;
  }
  remove_runner(st, i);
  res.status = 204;
  count(self, "runners_deleted");
}

void perform(github_pointer self, const github_request& req, int64_t installation,
             github_response& res) {
  switch (req.op) {
    case github_op::create_installation_token:
      mint_token(self, req, installation, res);
      return;
    case github_op::generate_jit_config:
      generate_jit_config(self, req, res);
      return;
    case github_op::create_registration_token:
      create_registration_token(self, req, res);
      return;
    case github_op::get_job:
      get_job(self, req, res);
      return;
    case github_op::list_runners:
      list_runners(self, req, res);
      return;
    case github_op::delete_runner:
      delete_runner(self, req, res);
      return;
    case github_op::get_runner_group:
      // Every group exists in the simulation; ids are stable per name.
      res.status = 200;
      res.resource_id = req.runner_group == "Default"
                          ? 1
                          : 2 + static_cast<int64_t>(std::hash<std::string>{}(req.runner_group) % 1000);
      return;
    case github_op::get_installation:
      get_installation(self, req, res);
      return;
  }
}

github_response reject(github_pointer self, int64_t installation, int32_t status,
                       std::string message) {
  github_response res;
  res.status = status;
  res.rate = rate_of(self, budget_of(self, installation));
  res.message = std::move(message);
  return res;
}

/// One call through GitHub's layers: gateway, authentication, primary and
/// secondary limits, transient 404s, then the operation itself.
github_response answer(github_pointer self, const github_request& req) {
  if (fault_hits(self, "github_5xx"))
    return reject(self, req.installation_id, 502, "Server Error");
  auto installation = authenticate(self, req);
  if (!installation)
    return reject(self, req.installation_id, 401, "Bad credentials");
  auto& budget = budget_of(self, *installation);
  if (budget.used >= self->state.cfg.github_hourly_limit)
    return reject(self, *installation, 403, "API rate limit exceeded");
  ++budget.used;
  github_response res;
  res.rate = rate_of(self, budget);
  if (auto wait = secondary_limit_wait(self, budget, req.op)) {
    res.status = 403;
    res.retry_after = *wait;
    res.message = secondary_limit_message;
    return res;
  }
  if (req.op != github_op::create_installation_token && fault_hits(self, "github_404")) {
    res.status = 404;
    res.message = "Not Found";
    return res;
  }
  perform(self, req, *installation, res);
  return res;
}

github_response call(github_pointer self, const github_request& req) {
  auto res = answer(self, req);
  auto op = to_string(req.op);
  auto status = std::to_string(res.status);
  count(self, op + " " + status);
  if (res.status == 403)
    count(self, "github_403");
  self->state.stats->add("ghscale_sim_github_responses_total",
                         {{"op", op}, {"status", status}});
  return res;
}

/// A response as the caller sees it: at once, or `github_latency` later.
/// The call is served on arrival either way, so state changes happen then.
caf::result<github_response> after_latency(github_pointer self,
                                           github_response res) {
  auto& st = self->state;
  if (st.cfg.github_latency <= caf::timespan{0})
    return res;
  auto promise = self->make_response_promise<github_response>();
  auto id = st.next_delayed_answer++;
  st.delayed_answers.emplace(id, state::delayed_answer{promise, std::move(res)});
  self->delayed_send(self, st.cfg.github_latency, atom::flush_v, id);
  return promise;
}

void deliver_delayed(github_pointer self, uint64_t id) {
  auto& pending = self->state.delayed_answers;
  auto i = pending.find(id);
  if (i == pending.end())
    return;
  auto answer = std::move(i->second);
  pending.erase(i);
  answer.promise.deliver(std::move(answer.response));
}

api_calls report(github_pointer self) {
  auto& st = self->state;
  auto out = st.counters;
  out["jobs_never_started"] = static_cast<int64_t>(st.queue.size());
  out["jobs_running"] = std::count_if(st.jobs.begin(), st.jobs.end(), [](auto& x) {
    return x.second.state == state::job_state::in_progress;
  });
  for (auto& [seq, key] : st.queue)
    out["never_started " + to_string(key)] = 1;
  // Which instance each job ran on, for queue-to-launch latency.
  for (auto& [key, j] : st.jobs)
    if (!j.ran_on.empty())
      out["ran_on " + to_string(key) + " " + j.ran_on] = 1;
  out["ghost_registrations"] = std::count_if(
    st.runners.begin(), st.runners.end(),
    [](const auto& x) { return x.second.instance_gone; });
  // Instances with a live registration, for orphans at the end.
  for (auto& [instance, runner] : st.runner_on_instance)
    out["registered_on " + instance] = 1;
  out["runners_idle_never_used"] = std::count_if(
    st.runners.begin(), st.runners.end(), [](const auto& x) {
      auto& r = x.second;
      return r.ephemeral && r.online && !r.job && r.jobs_run == 0;
    });
  return api_calls{{out.begin(), out.end()}};
}

} // namespace

sim_github_actor::behavior_type
sim_github(sim_github_actor::stateful_pointer<sim_github_state> self,
           simulation_config cfg, metrics_ptr stats) {
  auto& st = self->state;
  st.rng.seed(cfg.seed);
  st.cfg = std::move(cfg);
  st.stats = std::move(stats);
  // Ground truth the simulation report reads, present even when zero.
  for (auto key : {"jobs_queued", "jobs_started", "jobs_completed",
                   "runners_registered", "github_403", "jit_configs_created",
                   "github_unknown_registration", "jobs_interrupted"})
    st.counters[key] = 0;
  return {
    [=](atom::call, const github_request& req) {
      return after_latency(self, call(self, req));
    },
    [=](atom::connect, queue_actor sink, sim_cloud_actor cloud) {
      self->state.webhook_sink = std::move(sink);
      self->state.cloud = std::move(cloud);
    },
    [=](atom::inject, const sim_job& job) { inject_job(self, job); },
    [=](atom::inject, const sim_fault& fault) { inject_fault(self, fault); },
    [=](atom::online, const std::string& instance_id, const secret_string& secret) {
      bring_online(self, instance_id, secret);
    },
    [=](atom::finished, int64_t runner_id) { finish_job(self, runner_id); },
    [=](atom::terminate, const std::string& instance_id, const secret_string& config) {
      instance_gone(self, instance_id, config);
    },
    [=](atom::stats) { return report(self); },
    [=](atom::flush, uint64_t id) { deliver_delayed(self, id); },
  };
}

} // namespace ghscale
