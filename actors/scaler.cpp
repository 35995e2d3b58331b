#include "actors/scaler.hpp"

#include "actors/backoff.hpp"
#include "actors/clock.hpp"
#include "actors/ops/log.hpp"
#include "transport/workflow_job.hpp"

#include <algorithm>
#include <functional>
#include <memory>
#include <set>
#include <utility>

namespace ghscale {

namespace {

using scaler_pointer = scaler_actor::stateful_pointer<scaler_state>;

/// What a scaler was spawned with, shared by its callbacks.
struct scaler_context {
  pool_config pool;
  scaler_config window;
  retry_config retry;
  timeouts_config timeouts;
  runner_ledger_actor ledger;
  fleet_launcher_actor launcher;
  github_app_actor github;
  job_retry_actor job_retry; // null when job retry is off
  queue_actor queue;         // the pool's: where a drain puts jobs back
  metrics_ptr stats;
};
using context_ptr = std::shared_ptr<const scaler_context>;

/// A job check answered 404 this soon after the job was queued is retried:
/// GitHub's API may not show a job yet when its webhook already arrived.
constexpr auto not_found_grace = std::chrono::seconds(60);

/// How soon after its decision a runner's registration must be able to
/// start: the launch's budget less CreateFleet and the hand-off to SSM (an
/// AWS call each), which the launcher's registration deadline also leaves.
caf::timespan registration_window(const timeouts_config& t) {
  return std::max(t.launch - 2 * t.aws_call, t.launch / 4);
}

/// How long a job may wait in the scaler before its deliveries must be
/// answered: the poller's request gives up after `scale`, and a decision
/// may still need a window and a whole launch.
caf::timespan answer_budget(const context_ptr& ctx) {
  return ctx->timeouts.scale - ctx->timeouts.launch - ctx->window.window
         - std::chrono::seconds(5);
}

// -- settling ---------------------------------------------------------------------

/// Answers every delivery of `key` with one outcome and forgets the job. A
/// retry waits `delay` if given, else the backoff of each delivery's
/// receive count.
void settle(scaler_pointer self, const context_ptr& ctx, const job_key& key,
            outcome_kind kind, const std::string& reason,
            std::optional<caf::timespan> delay = std::nullopt) {
  auto& st = self->state;
  auto entry = st.jobs.find(key);
  if (entry == st.jobs.end())
    return;
  for (auto& d : entry->second.deliveries) {
    auto call = st.calls.find(d.call);
    if (call == st.calls.end())
      continue;
    auto& o = call->second.outcomes[d.slot];
    o.kind = kind;
    o.reason = reason;
    o.delay = caf::timespan{0};
    if (kind == outcome_kind::retry)
      o.delay = delay ? *delay
                      : jittered_backoff(ctx->retry.base, ctx->retry.max,
                                         d.receive_count, ctx->retry.jitter,
                                         st.rng);
    if (kind == outcome_kind::retry && st.draining)
      o.delay = std::max(o.delay, st.give_back_after);
    if (--call->second.unsettled == 0) {
      call->second.promise.deliver(batch_outcome{std::move(call->second.outcomes)});
      st.calls.erase(call);
    }
  }
  st.jobs.erase(entry);
}

/// Gives every job of `keys` back to its queue at once (a drain).
void give_back(scaler_pointer self, const context_ptr& ctx,
               const std::vector<job_key>& keys, const std::string& why) {
  for (auto& key : keys)
    settle(self, ctx, key, outcome_kind::retry, why, caf::timespan{0});
}

// -- decisions ----------------------------------------------------------------------

/// What becomes of one job in a decision.
struct job_verdict {
  bool decided = false;
  outcome_kind kind = outcome_kind::retry;
  std::string reason = "no decision reached";
  std::string metric; // the `outcome` label of ghscale_jobs_total
};

/// One installation's part of a launch: the admission its registrations
/// were planned under.
struct planned_installation {
  installation_client_actor client;
  uint64_t ticket = 0;
  int32_t admitted = 0;
};

/// One window's decision while it is being worked out.
struct decision {
  uint64_t window = 0;
  std::vector<job_key> keys; // the jobs decided, in arrival order
  std::map<job_key, job_verdict> verdicts;
  /// Granted jobs GitHub's budget cannot register in time yet, with when
  /// their installation may admit them.
  std::map<job_key, caf::timespan> deferred;
  reservation capacity;
  /// What the launch asks for: the admitted specs, in priority order.
  std::vector<runner_spec> launch_specs;
  std::map<int64_t, planned_installation> planned; // by installation
  size_t pending = 0; // admissions or job checks still out
  int32_t launched = 0;
  int32_t failed = 0;
};
using decision_ptr = std::shared_ptr<decision>;

void decide(decision& d, const job_key& job, outcome_kind kind,
            std::string reason, std::string metric) {
  d.verdicts[job] = job_verdict{true, kind, std::move(reason), std::move(metric)};
}

const job_event& event_of(scaler_pointer self, const job_key& key) {
  return self->state.jobs.at(key).first.event;
}

std::vector<job_key> undecided_jobs(const decision& d) {
  std::vector<job_key> out;
  for (auto& key : d.keys)
    if (!d.verdicts.at(key).decided)
      out.push_back(key);
  return out;
}

bool contains(const std::vector<job_key>& xs, const job_key& x) {
  return std::find(xs.begin(), xs.end(), x) != xs.end();
}

/// A handle that died or a relay whose child is restarting: worth asking
/// the App for a fresh client next time.
bool is_down(const caf::error& err) {
  return err == caf::sec::request_receiver_down || err == errc::unavailable;
}

/// Where a runner for `ev` registers: the organization for org-level pools,
/// else the job's repository.
repository_ref runner_target(const pool_config& pool, const job_event& ev) {
  if (!pool.org_level)
    return ev.repository;
  return repository_ref{ev.repository.owner, "", ev.repository.type};
}

runner_spec spec_of(const pool_config& pool, const job_event& ev) {
  return runner_spec{ev.key, runner_target(pool, ev), ev.installation_id, 0,
                     ev.repository};
}

/// A reusable runner launched for one job may take another; over its cap a
/// reusable pool acks jobs a busy runner will take later. Either way the
/// message is gone, so job retry looks at the job again later.
void schedule_rechecks(scaler_pointer self, const context_ptr& ctx,
                       const decision& d) {
  if (ctx->pool.mode != runner_mode::reusable || !ctx->job_retry)
    return;
  for (auto& key : d.keys) {
    auto& verdict = d.verdicts.at(key);
    if (verdict.kind == outcome_kind::done
        && (verdict.metric == "launched" || verdict.metric == "already_served"
            || verdict.metric == "over_cap_acked"))
      self->send(ctx->job_retry, atom::recheck_v,
                 recheck{ctx->pool.name, event_of(self, key)});
  }
}

void arm_budget_tick(scaler_pointer self, const context_ptr& ctx);

/// Jobs the budget deferred wait in the scaler (their messages stay hidden)
/// unless their installation admits them only after their answer is due:
/// those go back to the queue until then.
void defer(scaler_pointer self, const context_ptr& ctx, const job_key& key,
           caf::timespan admit_at) {
  auto& entry = self->state.jobs.at(key);
  auto t = now(self);
  if (self->state.draining) {
    settle(self, ctx, key, outcome_kind::retry, "the scaler is draining",
           caf::timespan{0});
    return;
  }
  if (admit_at > entry.answer_by) {
    settle(self, ctx, key, outcome_kind::retry,
           "waiting for GitHub's write budget",
           std::max(admit_at - t, ctx->retry.base));
    return;
  }
  entry.phase = job_phase::budget;
  entry.budget_at = admit_at;
}

void drained_if_done(scaler_pointer self, const context_ptr& ctx);

/// Settles every job of the decision (or defers it), logs and counts.
void finish(scaler_pointer self, const context_ptr& ctx, const decision_ptr& d) {
  --self->state.deciding;
  if (d->keys.empty())
    self->state.refilling = false;
  schedule_rechecks(self, ctx, *d);
  auto& pool = ctx->pool.name;
  auto& stats = *ctx->stats;
  stats.add("ghscale_scaler_decisions_total", {{"pool", pool}});
  caf::timespan budget_wait{0};
  for (auto& [key, at] : d->deferred)
    budget_wait = std::max(budget_wait, at - now(self));
  log::info("scaler decision",
            {{"pool", pool},
             {"window", d->window},
             {"jobs", static_cast<int64_t>(d->keys.size())},
             {"granted", static_cast<int64_t>(d->capacity.granted.size())},
             {"idle_topup", d->capacity.idle_topup},
             {"waiting_for_budget", static_cast<int64_t>(d->deferred.size())},
             {"budget_wait_ms", to_ms(budget_wait)},
             {"launched", d->launched},
             {"failed", d->failed}});
  for (auto& key : d->keys) {
    if (auto deferred = d->deferred.find(key); deferred != d->deferred.end()) {
      stats.add("ghscale_jobs_total", {{"pool", pool}, {"outcome", "budget_wait"}});
      defer(self, ctx, key, deferred->second);
      continue;
    }
    auto& verdict = d->verdicts.at(key);
    if (!verdict.metric.empty())
      stats.add("ghscale_jobs_total", {{"pool", pool}, {"outcome", verdict.metric}});
    settle(self, ctx, key, verdict.kind, verdict.reason);
  }
  arm_budget_tick(self, ctx);
  drained_if_done(self, ctx);
}

/// Tells the ledger what came of a reservation; a lost report only delays
/// the release of its slots until the ledger expires them.
void report_launch(scaler_pointer self, const context_ptr& ctx,
                   launch_report rep) {
  auto id = rep.reservation_id;
  self->request(ctx->ledger, ctx->timeouts.ledger, atom::report_v, std::move(rep))
    .then([](const ledger_counts&) {},
          [=](const caf::error& err) {
            log::warn("scaler could not report a launch to the ledger",
                      {{"pool", ctx->pool.name},
                       {"reservation", id},
                       {"error", self->system().render(err)}});
          });
}

/// The launch is over: admitted registrations that did not come (a partial
/// fill, a job no longer queued) are set free for other decisions.
void release_admissions(scaler_pointer self, const decision& d) {
  for (auto& [installation, planned] : d.planned)
    if (planned.ticket != 0)
      self->send(planned.client, atom::release_v, planned.ticket);
}

void apply_launch_result(const decision_ptr& d, const launch_request& req,
                         const launch_result& result) {
  // The window's job a spec was for (not top-ups, not replacements).
  auto job_of = [&](int32_t spec_index) -> const job_key* {
    if (spec_index < 0 || static_cast<size_t>(spec_index) >= req.runners.size())
      return nullptr;
    auto& key = req.runners[static_cast<size_t>(spec_index)].job;
    return d->verdicts.count(key) > 0 ? &key : nullptr;
  };
  for (auto& up : result.launched) {
    ++d->launched;
    if (auto key = job_of(up.spec_index))
      decide(*d, *key, outcome_kind::done, "runner configured", "launched");
  }
  for (auto& failure : result.failed) {
    ++d->failed;
    if (auto key = job_of(failure.spec_index))
      decide(*d, *key, outcome_kind::retry, failure.code, "launch_failed");
  }
}

/// Queue-to-launch: from a launched job's message being queued until its
/// runner's instance is up and configured.
void observe_queue_to_launch(scaler_pointer self, const context_ptr& ctx,
                             const decision& d) {
  auto t = now(self);
  for (auto& key : d.keys) {
    auto sent_at = self->state.jobs.at(key).first.sent_at;
    if (d.verdicts.at(key).metric == "launched" && sent_at.count() > 0 && t >= sent_at)
      ctx->stats->observe("ghscale_queue_to_launch_seconds", {{"pool", ctx->pool.name}},
                          std::chrono::duration<double>(t - sent_at).count());
  }
}

void launch(scaler_pointer self, const context_ptr& ctx, const decision_ptr& d) {
  // Granted jobs that were decided (not queued, no check) or deferred are
  // not launched; the report releases their slots.
  auto& granted = d->capacity.granted;
  granted.erase(std::remove_if(granted.begin(), granted.end(),
                               [&](const job_key& key) {
                                 return d->verdicts.at(key).decided
                                        || d->deferred.count(key) > 0;
                               }),
                granted.end());
  auto& specs = d->launch_specs;
  specs.erase(std::remove_if(specs.begin(), specs.end(),
                             [&](const runner_spec& spec) {
                               auto v = d->verdicts.find(spec.job);
                               return v != d->verdicts.end() && v->second.decided;
                             }),
              specs.end());
  if (specs.empty()) {
    report_launch(self, ctx, launch_report{d->capacity.id, {}, 0});
    release_admissions(self, *d);
    finish(self, ctx, d);
    return;
  }
  // A granted job the launcher does not account for must not be acked.
  for (auto& key : granted)
    decide(*d, key, outcome_kind::retry, "launcher did not report the job",
           "launch_failed");
  launch_request req;
  req.pool = ctx->pool.name;
  req.client_token = ctx->pool.name + "-" + std::to_string(d->capacity.id);
  req.runners = specs;
  req.reservation = d->capacity.id;
  auto count = static_cast<int32_t>(req.runners.size());
  self->request(ctx->launcher, ctx->timeouts.launch, atom::launch_v, req)
    .then(
      [=](const launch_result& result) {
        apply_launch_result(d, req, result);
        observe_queue_to_launch(self, ctx, *d);
        report_launch(self, ctx,
                      launch_report{d->capacity.id, result.launched,
                                    static_cast<int32_t>(result.failed.size())});
        release_admissions(self, *d);
        finish(self, ctx, d);
      },
      [=](const caf::error& err) {
        auto reason = "launch failed: " + self->system().render(err);
        for (auto& key : d->capacity.granted)
          decide(*d, key, outcome_kind::retry, reason, "launch_failed");
        d->failed = count;
        // Nothing launched as far as we know: the ledger frees the slots.
        report_launch(self, ctx, launch_report{d->capacity.id, {}, count});
        release_admissions(self, *d);
        finish(self, ctx, d);
      });
}

/// Calls `then` with the installation's client, asking the App once.
void with_client(
  scaler_pointer self, const context_ptr& ctx, int64_t installation,
  std::function<void(caf::expected<installation_client_actor>)> then) {
  auto cached = self->state.clients.find(installation);
  if (cached != self->state.clients.end()) {
    then(cached->second);
    return;
  }
  self->request(ctx->github, ctx->timeouts.github_call, atom::client_v,
                installation)
    .then(
      [=](const installation_client_actor& client) {
        self->state.clients[installation] = client;
        then(client);
      },
      [=](caf::error& err) { then(std::move(err)); });
}

/// Runs `next` once the last of `d->pending` outstanding answers came.
void one_answered(const decision_ptr& d, const std::function<void()>& next) {
  if (--d->pending == 0)
    next();
}

void apply_job_status(decision& d, const job_key& key,
                      const std::string& status) {
  if (status == "queued" || status == "waiting")
    return; // still needs a runner
  if (status == "in_progress" || status == "completed")
    decide(d, key, outcome_kind::done, "job no longer queued", "not_queued");
  else
    decide(d, key, outcome_kind::retry, "unexpected job status " + status,
           "check_failed");
}

void check_job(scaler_pointer self, const context_ptr& ctx,
               const decision_ptr& d, const job_key& key) {
  auto& ev = event_of(self, key);
  auto installation = ev.installation_id;
  auto query = job_status_query{ev.repository, key.job_id};
  auto queued_at = self->state.jobs.at(key).first.sent_at;
  auto next = [=] { launch(self, ctx, d); };
  auto failed = [=](const std::string& what, const caf::error& err) {
    // A 404 (the installation client already retried one right after its
    // token was minted) means the job was deleted or the App cannot see its
    // repository: retrying cannot help, so it is settled, unless the job was
    // queued so recently that GitHub may not show it yet.
    if (err == errc::not_found
        && (queued_at == caf::timespan{0} || now(self) - queued_at >= not_found_grace)) {
      log::warn("job not found: settled without a runner",
                {{"pool", ctx->pool.name}, {"job", to_string(key)},
                 {"error", describe(err)}});
      decide(*d, key, outcome_kind::done,
             "job not found (deleted, or the App cannot see it)", "job_not_found");
    } else {
      decide(*d, key, outcome_kind::retry, what + self->system().render(err),
             "check_failed");
    }
    one_answered(d, next);
  };
  with_client(self, ctx, installation,
              [=](caf::expected<installation_client_actor> client) {
                if (!client) {
                  failed("no installation client: ", client.error());
                  return;
                }
                self
                  ->request(*client, ctx->timeouts.launch, atom::job_status_v,
                            query)
                  .then(
                    [=](const std::string& status) {
                      apply_job_status(*d, key, status);
                      one_answered(d, next);
                    },
                    [=](const caf::error& err) {
                      if (is_down(err))
                        self->state.clients.erase(installation);
                      failed("job check failed: ", err);
                    });
              });
}

/// Asks GitHub whether each admitted job still waits, then launches.
void check_jobs(scaler_pointer self, const context_ptr& ctx,
                const decision_ptr& d) {
  std::vector<job_key> admitted;
  for (auto& spec : d->launch_specs)
    if (contains(d->capacity.granted, spec.job))
      admitted.push_back(spec.job);
  if (!ctx->pool.job_queued_check || admitted.empty()) {
    launch(self, ctx, d);
    return;
  }
  d->pending = admitted.size();
  for (auto& key : admitted)
    check_job(self, ctx, d, key);
}

/// Every runner the reservation allows, in priority order: replacements
/// for jobs that lost theirs, the window's granted jobs, idle top-ups.
std::vector<runner_spec> wanted_runners(scaler_pointer self,
                                        const context_ptr& ctx,
                                        const decision& d) {
  std::vector<runner_spec> out = d.capacity.replacements;
  for (auto& key : d.keys)
    if (contains(d.capacity.granted, key))
      out.push_back(spec_of(ctx->pool, event_of(self, key)));
  if (d.keys.empty())
    return out; // a replacement decision tops nothing up
  auto topup = spec_of(ctx->pool, event_of(self, d.keys.front()));
  topup.job = job_key{0, 0};
  topup.repository = {};
  for (int32_t n = 0; n < d.capacity.idle_topup; ++n)
    out.push_back(topup);
  return out;
}

/// Asks each installation how many of its runners it can register within
/// the registration window; launches only those. Granted jobs beyond that
/// wait for the budget; replacements and top-ups beyond it are left to a
/// later decision (the report returns their slots).
void plan_registrations(scaler_pointer self, const context_ptr& ctx,
                        const decision_ptr& d) {
  std::map<int64_t, std::vector<runner_spec>> by_installation;
  for (auto& spec : wanted_runners(self, ctx, *d))
    by_installation[spec.installation_id].push_back(spec);
  d->pending = by_installation.size();
  // Takes each installation's first `admitted` runners, in priority order.
  auto next = [=] {
    std::map<int64_t, int32_t> left;
    for (auto& [installation, planned] : d->planned)
      left[installation] = planned.admitted;
    for (auto& spec : wanted_runners(self, ctx, *d)) {
      auto planned = d->planned.find(spec.installation_id);
      if (planned == d->planned.end() || left[spec.installation_id]-- <= 0)
        continue;
      spec.admission = planned->second.ticket;
      d->launch_specs.push_back(spec);
    }
    check_jobs(self, ctx, d);
  };
  auto window = registration_window(ctx->timeouts);
  for (auto& [installation, specs] : by_installation) {
    // Granted jobs from `from` on were not admitted: they wait for the
    // budget, or are retried when it could not be asked.
    auto not_admitted = [=, specs = specs](size_t from, caf::timespan admit_at,
                                           const std::string& failure) {
      for (auto i = from; i < specs.size(); ++i) {
        auto& key = specs[i].job;
        if (!contains(d->capacity.granted, key))
          continue;
        if (failure.empty())
          d->deferred.emplace(key, admit_at);
        else
          decide(*d, key, outcome_kind::retry, failure, "budget_error");
      }
    };
    auto count = static_cast<int32_t>(specs.size());
    with_client(
      self, ctx, installation,
      [=, installation = installation](caf::expected<installation_client_actor> client) {
        if (!client) {
          not_admitted(0, {}, "no installation client: "
                                + self->system().render(client.error()));
          one_answered(d, next);
          return;
        }
        self
          ->request(*client, ctx->timeouts.github_call, atom::admit_v,
                    registration_admission{count, window})
          .then(
            [=](const admitted_registrations& answer) {
              auto admitted = std::clamp(answer.granted, 0, count);
              d->planned[installation]
                = planned_installation{*client, answer.ticket, admitted};
              not_admitted(static_cast<size_t>(admitted), answer.next_at, "");
              one_answered(d, next);
            },
            [=](const caf::error& err) {
              if (is_down(err))
                self->state.clients.erase(installation);
              not_admitted(0, {}, "GitHub budget unknown: "
                                    + self->system().render(err));
              one_answered(d, next);
            });
      });
  }
}

/// Decides every needed job the ledger did not grant a slot; granted jobs
/// are decided by the launch (or wait for the budget).
void apply_reservation(scaler_pointer self, const context_ptr& ctx,
                       const decision_ptr& d, const std::vector<job_key>& needed) {
  auto& res = d->capacity;
  for (auto& key : needed) {
    if (contains(res.granted, key))
      continue;
    if (contains(res.already_served, key))
      decide(*d, key, outcome_kind::done, "runner already configured",
             "already_served");
    else if (contains(res.in_flight, key))
      decide(*d, key, outcome_kind::retry,
             "a runner for the job is still being set up", "in_flight");
    else if (contains(res.held, key))
      decide(*d, key, outcome_kind::retry,
             "kept on the queue for a job whose runner another job took",
             "held");
    else if (ctx->pool.mode == runner_mode::ephemeral)
      decide(*d, key, outcome_kind::retry, "pool at capacity", "over_cap_retry");
    else
      decide(*d, key, outcome_kind::done,
             "reusable pool at capacity; a busy runner will take it",
             "over_cap_acked");
  }
  ctx->stats->set("ghscale_desired_runners", {{"pool", ctx->pool.name}},
                  res.active + static_cast<int32_t>(res.granted.size())
                    + static_cast<int32_t>(res.replacements.size())
                    + res.idle_topup);
  (void) self;
}

void reserve_capacity(scaler_pointer self, const context_ptr& ctx,
                      const decision_ptr& d) {
  auto needed = undecided_jobs(*d);
  bool replacements_only = d->keys.empty();
  if (needed.empty() && ctx->pool.min_idle == 0 && !replacements_only) {
    finish(self, ctx, d);
    return;
  }
  // Idle top-ups take the first job's target; a decision without jobs has
  // none to give them.
  reservation_request req{{}, !replacements_only};
  for (auto& key : needed)
    req.jobs.push_back(spec_of(ctx->pool, event_of(self, key)));
  self->request(ctx->ledger, ctx->timeouts.ledger, atom::reserve_v,
                std::move(req))
    .then(
      [=](const reservation& res) {
        d->capacity = res;
        apply_reservation(self, ctx, d, needed);
        if (!res.granted.empty() || !res.replacements.empty()
            || res.idle_topup > 0)
          plan_registrations(self, ctx, d);
        else
          finish(self, ctx, d);
      },
      [=](const caf::error& err) {
        auto reason = "ledger: " + self->system().render(err);
        for (auto& key : needed)
          decide(*d, key, outcome_kind::retry, reason, "ledger_error");
        finish(self, ctx, d);
      });
}

/// Events without an installation (not delivered by the App) get theirs
/// from the App, one lookup per target, before capacity is reserved. A job
/// whose lookup fails is retried: nothing is acked on a guess.
void resolve_installations(scaler_pointer self, const context_ptr& ctx,
                           const decision_ptr& d) {
  std::map<std::string, repository_ref> targets;
  for (auto& key : d->keys) {
    auto& ev = event_of(self, key);
    if (ev.installation_id == 0) {
      auto target = runner_target(ctx->pool, ev);
      targets.emplace(target.full_name(), target);
    }
  }
  if (targets.empty()) {
    reserve_capacity(self, ctx, d);
    return;
  }
  d->pending = targets.size();
  for (auto& [name, target] : targets) {
    auto resolved = [=, name = name](caf::expected<int64_t> id) {
      for (auto& key : d->keys) {
        auto& ev = self->state.jobs.at(key).first.event;
        if (ev.installation_id != 0
            || runner_target(ctx->pool, ev).full_name() != name)
          continue;
        if (id)
          ev.installation_id = *id;
        else
          decide(*d, key, outcome_kind::retry,
                 "no installation: " + self->system().render(id.error()),
                 "installation_unknown");
      }
      one_answered(d, [=] { reserve_capacity(self, ctx, d); });
    };
    self->request(ctx->github, ctx->timeouts.github_call, atom::lookup_v, target)
      .then([=](int64_t id) { resolved(id); },
            [=](caf::error& err) { resolved(std::move(err)); });
  }
}

void close_window(scaler_pointer self, const context_ptr& ctx) {
  auto& st = self->state;
  auto d = std::make_shared<decision>();
  d->window = st.open_window != 0 ? st.open_window : ++st.last_window;
  d->keys = std::move(st.window);
  st.window.clear();
  st.open_window = 0;
  for (auto& key : d->keys) {
    st.jobs.at(key).phase = job_phase::deciding;
    d->verdicts.emplace(key, job_verdict{});
  }
  if (!d->keys.empty()) {
    ++st.deciding;
    resolve_installations(self, ctx, d);
  }
}

/// How often the scaler looks for jobs waiting for a replacement runner
/// that no delivery of theirs will trigger a decision for (their messages
/// are gone: their runner was configured, then another job took it).
constexpr auto refill_every = std::chrono::seconds(10);

/// A decision for replacements alone, when the ledger has jobs waiting.
void refill(scaler_pointer self, const context_ptr& ctx) {
  self->delayed_send(self, refill_every, atom::reconcile_v);
  auto& st = self->state;
  if (st.draining || st.refilling)
    return;
  self->request(ctx->ledger, ctx->timeouts.ledger, atom::counts_v)
    .then(
      [=](const ledger_counts& counts) {
        auto& st = self->state;
        if (counts.waiting == 0 || st.draining || st.refilling)
          return;
        st.refilling = true;
        ++st.deciding;
        auto d = std::make_shared<decision>();
        d->window = ++st.last_window;
        reserve_capacity(self, ctx, d);
      },
      [](const caf::error&) {}); // the next period asks again
}

/// Opens a window for jobs that just joined, or closes it at once when
/// there is no window or it is full.
void schedule_decision(scaler_pointer self, const context_ptr& ctx) {
  auto& st = self->state;
  if (st.window.empty())
    return;
  auto& window = ctx->window;
  if (st.open_window == 0) {
    st.open_window = ++st.last_window;
    if (window.window > caf::timespan{0})
      self->delayed_send(self, window.window, atom::flush_v, st.open_window);
  }
  if (window.window <= caf::timespan{0}
      || st.window.size() >= static_cast<size_t>(std::max(1, window.max_batch)))
    close_window(self, ctx);
}

caf::result<batch_outcome> join(scaler_pointer self, const context_ptr& ctx,
                                scale_request& req) {
  if (req.jobs.empty())
    return batch_outcome{};
  auto& st = self->state;
  auto id = st.next_call++;
  auto& call = st.calls[id];
  auto promise = self->make_response_promise<batch_outcome>();
  call.promise = promise;
  call.unsettled = req.jobs.size();
  for (auto& job : req.jobs)
    call.outcomes.push_back(message_outcome{job.receipt, outcome_kind::retry,
                                            caf::timespan{0}, ""});
  int64_t copies = 0;
  std::vector<job_key> refused;
  for (size_t slot = 0; slot < req.jobs.size(); ++slot) {
    auto& job = req.jobs[slot];
    auto key = job.event.key;
    auto [entry, added] = st.jobs.try_emplace(key);
    entry->second.deliveries.push_back(job_delivery{id, slot, job.receive_count});
    if (!added) {
      // Being served: this delivery gets the same outcome, when it comes.
      ++copies;
      continue;
    }
    entry->second.first = std::move(job);
    entry->second.answer_by = now(self) + answer_budget(ctx);
    if (st.draining)
      refused.push_back(key);
    else
      st.window.push_back(key);
  }
  ctx->stats->add("ghscale_duplicates_suppressed_total", {{"pool", ctx->pool.name}},
                  copies);
  give_back(self, ctx, refused, "the scaler is draining");
  schedule_decision(self, ctx);
  return promise;
}

/// The budget timer: jobs whose installation may admit them now are decided
/// again; those whose answer is due go back to the queue.
void budget_tick(scaler_pointer self, const context_ptr& ctx) {
  auto& st = self->state;
  auto t = now(self);
  if (st.tick_at && *st.tick_at <= t)
    st.tick_at.reset();
  std::vector<job_key> due;
  for (auto& [key, entry] : st.jobs)
    if (entry.phase == job_phase::budget
        && (entry.budget_at <= t || entry.answer_by <= t))
      due.push_back(key);
  for (auto& key : due) {
    auto& entry = st.jobs.at(key);
    if (entry.budget_at <= t) {
      entry.phase = job_phase::window;
      st.window.push_back(key);
    } else {
      settle(self, ctx, key, outcome_kind::retry,
             "waiting for GitHub's write budget",
             std::max(entry.budget_at - t, ctx->retry.base));
    }
  }
  if (!st.window.empty())
    close_window(self, ctx);
  arm_budget_tick(self, ctx);
}

/// One timer at a time, for the earliest job waiting for the budget.
void arm_budget_tick(scaler_pointer self, const context_ptr& ctx) {
  auto& st = self->state;
  std::optional<caf::timespan> next;
  for (auto& [key, entry] : st.jobs)
    if (entry.phase == job_phase::budget) {
      auto at = std::min(entry.budget_at, entry.answer_by);
      next = next ? std::min(*next, at) : at;
    }
  if (!next || (st.tick_at && *st.tick_at <= *next))
    return;
  st.tick_at = *next;
  self->delayed_send(self, std::max(*next - now(self), caf::timespan{0}),
                     atom::tick_v);
  (void) ctx;
}

/// Once draining and no decision is under way: the jobs that lost their
/// runner and wait for a replacement go back on the queue (a restarted
/// ledger would not know them), then the drain is answered.
void drained_if_done(scaler_pointer self, const context_ptr& ctx) {
  auto& st = self->state;
  if (!st.draining || st.deciding > 0 || st.drain_waiters.empty())
    return;
  auto answer = [=] {
    for (auto& waiter : self->state.drain_waiters)
      waiter.deliver(true);
    self->state.drain_waiters.clear();
  };
  self->request(ctx->ledger, ctx->timeouts.ledger, atom::drain_v)
    .then(
      [=](const std::vector<job_event>& unmet) {
        if (unmet.empty() || !ctx->queue) {
          answer();
          return;
        }
        std::vector<outgoing_message> letters;
        for (auto& ev : unmet)
          letters.push_back({to_webhook_payload(ev), self->state.give_back_after});
        auto n = static_cast<int64_t>(letters.size());
        self->request(ctx->queue, ctx->timeouts.aws_call, atom::enqueue_v,
                      std::move(letters))
          .then(
            [=](const batch_result& res) {
              log::info("jobs waiting for a replacement runner put back on the queue",
                        {{"pool", ctx->pool.name},
                         {"jobs", n},
                         {"failed", static_cast<int64_t>(res.failed.size())}});
              answer();
            },
            [=](const caf::error& err) {
              log::error("jobs waiting for a replacement runner could not be "
                         "put back on the queue",
                         {{"pool", ctx->pool.name},
                          {"jobs", n},
                          {"error", self->system().render(err)}});
              answer();
            });
      },
      [=](const caf::error& err) {
        log::warn("scaler could not ask the ledger for waiting jobs",
                  {{"pool", ctx->pool.name}, {"error", self->system().render(err)}});
        answer();
      });
}

/// Gives back every job not being decided; decisions under way finish.
caf::result<bool> drain(scaler_pointer self, const context_ptr& ctx,
                        caf::timespan give_back_after) {
  auto& st = self->state;
  auto rp = self->make_response_promise<bool>();
  st.drain_waiters.push_back(rp);
  st.draining = true;
  st.give_back_after = give_back_after;
  st.open_window = 0;
  std::vector<job_key> waiting;
  for (auto& [key, entry] : st.jobs)
    if (entry.phase != job_phase::deciding)
      waiting.push_back(key);
  st.window.clear();
  log::info("scaler drained",
            {{"pool", ctx->pool.name},
             {"given_back", static_cast<int64_t>(waiting.size())},
             {"deciding", static_cast<int64_t>(st.jobs.size() - waiting.size())}});
  give_back(self, ctx, waiting, "the scaler is draining");
  drained_if_done(self, ctx);
  return rp;
}

// -- spot interruptions ------------------------------------------------------------

/// Deregisters an interrupted runner so it takes no job in its last two
/// minutes; GitHub refuses it for a busy runner, which finishes what it can.
void deregister_interrupted(scaler_pointer self, const context_ptr& ctx,
                            const interruption& in) {
  if (in.runner_id == 0 || in.installation_id == 0)
    return;
  auto failed = [=](const caf::error& err) {
    if (err == errc::runner_busy)
      log::info("interrupted runner is running a job and keeps it",
                {{"pool", ctx->pool.name}, {"runner", in.runner_name}});
    else
      log::warn("interrupted runner not deregistered",
                {{"pool", ctx->pool.name},
                 {"runner", in.runner_name},
                 {"error", self->system().render(err)}});
  };
  with_client(self, ctx, in.installation_id,
              [=](caf::expected<installation_client_actor> client) {
                if (!client) {
                  failed(client.error());
                  return;
                }
                self
                  ->request(*client, ctx->timeouts.github_call,
                            atom::unregister_v,
                            runner_removal{in.target, in.runner_id})
                  .then(
                    [=](int64_t) {
                      log::info("interrupted runner deregistered",
                                {{"pool", ctx->pool.name},
                                 {"runner", in.runner_name}});
                    },
                    failed);
              });
}

/// Launches the replacement the ledger reserved for the interrupted
/// runner's job; what does not come up goes back to the ledger's waiting
/// jobs with the report.
void launch_replacement(scaler_pointer self, const context_ptr& ctx,
                        const interruption& in) {
  if (in.reservation == 0)
    return;
  launch_request req;
  req.pool = ctx->pool.name;
  req.client_token = ctx->pool.name + "-" + std::to_string(in.reservation);
  req.runners.push_back(in.replacement);
  req.on_demand = ctx->pool.on_demand_after_interruption;
  req.reservation = in.reservation;
  self->request(ctx->launcher, ctx->timeouts.launch, atom::launch_v, req)
    .then(
      [=](const launch_result& result) {
        log::info("replacement launched for an interrupted runner",
                  {{"pool", ctx->pool.name},
                   {"job", to_string(in.replacement.job)},
                   {"launched", static_cast<int64_t>(result.launched.size())},
                   {"on_demand", req.on_demand}});
        report_launch(self, ctx,
                      launch_report{in.reservation, result.launched,
                                    static_cast<int32_t>(result.failed.size())});
      },
      [=](const caf::error& err) {
        log::warn("replacement launch failed",
                  {{"pool", ctx->pool.name},
                   {"job", to_string(in.replacement.job)},
                   {"error", self->system().render(err)}});
        report_launch(self, ctx, launch_report{in.reservation, {}, 1});
      });
}

caf::result<bool> interrupt(scaler_pointer self, const context_ptr& ctx,
                            const std::string& instance_id) {
  auto rp = self->make_response_promise<bool>();
  self->request(ctx->ledger, ctx->timeouts.ledger, atom::interrupt_v, instance_id)
    .then(
      [=](const interruption& in) mutable {
        if (in.known) {
          deregister_interrupted(self, ctx, in);
          launch_replacement(self, ctx, in);
        }
        rp.deliver(in.known);
      },
      [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
  return rp;
}

} // namespace

scaler_actor::behavior_type
scaler(scaler_actor::stateful_pointer<scaler_state> self, pool_config pool,
       scaler_config window, retry_config retry, timeouts_config timeouts,
       runner_ledger_actor ledger, fleet_launcher_actor launcher,
       github_app_actor github, job_retry_actor job_retry, queue_actor queue,
       metrics_ptr stats, uint64_t seed) {
  self->state.rng.seed(seed);
  auto ctx = std::make_shared<const scaler_context>(
    scaler_context{std::move(pool), window, retry, timeouts, std::move(ledger),
                   std::move(launcher), std::move(github), std::move(job_retry),
                   std::move(queue), std::move(stats)});
  self->delayed_send(self, refill_every, atom::reconcile_v);
  return {
    [=](atom::scale, scale_request& req) -> caf::result<batch_outcome> {
      return join(self, ctx, req);
    },
    [=](atom::flush, uint64_t window_id) {
      if (window_id == self->state.open_window)
        close_window(self, ctx);
    },
    [=](atom::tick) { budget_tick(self, ctx); },
    [=](atom::reconcile) { refill(self, ctx); },
    [=](atom::drain, caf::timespan give_back_after) {
      return drain(self, ctx, give_back_after);
    },
    [=](atom::interrupt, const std::string& instance_id) {
      return interrupt(self, ctx, instance_id);
    },
  };
}

} // namespace ghscale
