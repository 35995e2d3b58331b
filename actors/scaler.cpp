#include "actors/scaler.hpp"

#include "actors/backoff.hpp"
#include "actors/log.hpp"

#include <algorithm>
#include <functional>
#include <memory>
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
  metrics_ptr stats;
};
using context_ptr = std::shared_ptr<const scaler_context>;

/// What becomes of one job, and so of every receipt that carries it.
struct job_verdict {
  bool decided = false;
  outcome_kind kind = outcome_kind::retry;
  std::string reason = "no decision reached";
  std::string metric; // the `outcome` label of ghscale_jobs_total
};

/// One window's decision while it is being worked out.
struct decision {
  uint64_t window = 0;
  std::vector<scale_call> calls;
  std::vector<pending_job> unique; // first receipt of each job, in order
  std::map<job_key, job_verdict> verdicts;
  int32_t duplicates = 0;
  size_t checks_left = 0;
  reservation capacity;
  int32_t launched = 0;
  int32_t failed = 0;
};
using decision_ptr = std::shared_ptr<decision>;

void decide(decision& d, const job_key& job, outcome_kind kind,
            std::string reason, std::string metric) {
  d.verdicts[job] = job_verdict{true, kind, std::move(reason), std::move(metric)};
}

std::vector<job_key> undecided_jobs(const decision& d) {
  std::vector<job_key> out;
  for (auto& job : d.unique)
    if (!d.verdicts.at(job.event.key).decided)
      out.push_back(job.event.key);
  return out;
}

/// A handle that died or a relay whose child is restarting: worth asking
/// the App for a fresh client next time.
bool is_down(const caf::error& err) {
  return err == caf::sec::request_receiver_down || err == errc::unavailable;
}

decision_ptr make_decision(uint64_t window, std::vector<scale_call> calls) {
  auto d = std::make_shared<decision>();
  d->window = window;
  d->calls = std::move(calls);
  for (auto& call : d->calls)
    for (auto& job : call.jobs)
      if (d->verdicts.emplace(job.event.key, job_verdict{}).second)
        d->unique.push_back(job);
      else
        ++d->duplicates;
  return d;
}

/// Where a runner for `ev` registers: the organization for org-level pools,
/// else the job's repository.
repository_ref runner_target(const pool_config& pool, const job_event& ev) {
  if (!pool.org_level)
    return ev.repository;
  return repository_ref{ev.repository.owner, "", ev.repository.type};
}

/// A reusable runner launched for one job may take another; over its cap a
/// reusable pool acks jobs a busy runner will take later. Either way the
/// message is gone, so job retry looks at the job again later.
void schedule_rechecks(scaler_pointer self, const context_ptr& ctx,
                       const decision& d) {
  if (ctx->pool.mode != runner_mode::reusable || !ctx->job_retry)
    return;
  for (auto& job : d.unique) {
    auto& verdict = d.verdicts.at(job.event.key);
    if (verdict.kind == outcome_kind::done
        && (verdict.metric == "launched" || verdict.metric == "already_served"
            || verdict.metric == "over_cap_acked"))
      self->send(ctx->job_retry, atom::recheck_v, recheck{ctx->pool.name, job.event});
  }
}

/// Answers every receipt of every call of the window, logs and counts.
void finish(scaler_pointer self, const context_ptr& ctx, const decision_ptr& d) {
  schedule_rechecks(self, ctx, *d);
  auto& pool = ctx->pool.name;
  auto& stats = *ctx->stats;
  stats.add("ghscale_scaler_decisions_total", {{"pool", pool}});
  stats.add("ghscale_duplicates_suppressed_total", {{"pool", pool}},
            d->duplicates);
  for (auto& job : d->unique) {
    auto& verdict = d->verdicts.at(job.event.key);
    if (!verdict.metric.empty())
      stats.add("ghscale_jobs_total", {{"pool", pool}, {"outcome", verdict.metric}});
  }
  log::info("scaler decision",
            {{"pool", pool},
             {"window", d->window},
             {"jobs", static_cast<int64_t>(d->unique.size())},
             {"duplicates", d->duplicates},
             {"granted", static_cast<int64_t>(d->capacity.granted.size())},
             {"idle_topup", d->capacity.idle_topup},
             {"launched", d->launched},
             {"failed", d->failed}});
  for (auto& call : d->calls) {
    batch_outcome out;
    for (auto& job : call.jobs) {
      auto& verdict = d->verdicts.at(job.event.key);
      message_outcome o{job.receipt, verdict.kind, caf::timespan{0},
                        verdict.reason};
      if (o.kind == outcome_kind::retry)
        o.delay = jittered_backoff(ctx->retry.base, ctx->retry.max,
                                   job.receive_count, ctx->retry.jitter,
                                   self->state.rng);
      out.outcomes.push_back(std::move(o));
    }
    call.promise.deliver(std::move(out));
  }
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

launch_request make_launch_request(const context_ptr& ctx, const decision& d) {
  launch_request req;
  req.pool = ctx->pool.name;
  req.client_token = ctx->pool.name + "-" + std::to_string(d.capacity.id);
  for (auto& key : d.capacity.granted) {
    auto& ev = std::find_if(d.unique.begin(), d.unique.end(),
                            [&](auto& job) { return job.event.key == key; })
                 ->event;
    req.runners.push_back(
      runner_spec{key, runner_target(ctx->pool, ev), ev.installation_id});
  }
  for (auto& spec : d.capacity.replacements)
    req.runners.push_back(spec);
  auto& first = d.unique.front().event;
  for (int32_t n = 0; n < d.capacity.idle_topup; ++n)
    req.runners.push_back(runner_spec{job_key{0, 0},
                                      runner_target(ctx->pool, first),
                                      first.installation_id});
  return req;
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
      decide(*d, *key, outcome_kind::done, "runner launched", "launched");
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
  auto now = self->clock().now().time_since_epoch();
  for (auto& job : d.unique) {
    auto& verdict = d.verdicts.at(job.event.key);
    if (verdict.metric == "launched" && job.sent_at.count() > 0 && now >= job.sent_at)
      ctx->stats->observe("ghscale_queue_to_launch_seconds", {{"pool", ctx->pool.name}},
                          std::chrono::duration<double>(now - job.sent_at).count());
  }
}

void launch(scaler_pointer self, const context_ptr& ctx, const decision_ptr& d) {
  // Granted jobs the check proved not to need a runner (or could not check)
  // are not launched; their slots are released by the report below.
  auto& granted = d->capacity.granted;
  granted.erase(std::remove_if(granted.begin(), granted.end(),
                               [&](const job_key& key) {
                                 return d->verdicts.at(key).decided;
                               }),
                granted.end());
  if (granted.empty() && d->capacity.replacements.empty()
      && d->capacity.idle_topup == 0) {
    report_launch(self, ctx, launch_report{d->capacity.id, {}, 0});
    finish(self, ctx, d);
    return;
  }
  // A granted job the launcher does not account for must not be acked.
  for (auto& key : d->capacity.granted)
    decide(*d, key, outcome_kind::retry, "launcher did not report the job",
           "launch_failed");
  auto req = make_launch_request(ctx, *d);
  auto specs = static_cast<int32_t>(req.runners.size());
  self->request(ctx->launcher, ctx->timeouts.launch, atom::launch_v, req)
    .then(
      [=](const launch_result& result) {
        apply_launch_result(d, req, result);
        observe_queue_to_launch(self, ctx, *d);
        report_launch(self, ctx,
                      launch_report{d->capacity.id, result.launched,
                                    static_cast<int32_t>(result.failed.size())});
        finish(self, ctx, d);
      },
      [=](const caf::error& err) {
        auto reason = "launch failed: " + self->system().render(err);
        for (auto& key : d->capacity.granted)
          decide(*d, key, outcome_kind::retry, reason, "launch_failed");
        d->failed = specs;
        // Nothing launched as far as we know: the ledger frees the slots.
        report_launch(self, ctx, launch_report{d->capacity.id, {}, specs});
        finish(self, ctx, d);
      });
}

bool contains(const std::vector<job_key>& xs, const job_key& x) {
  return std::find(xs.begin(), xs.end(), x) != xs.end();
}

/// Decides every needed job the ledger did not grant a slot; granted jobs
/// are decided by the launch.
void apply_reservation(const context_ptr& ctx, const decision_ptr& d,
                       const std::vector<job_key>& needed) {
  auto& res = d->capacity;
  for (auto& key : needed) {
    if (contains(res.granted, key))
      continue;
    if (contains(res.already_served, key))
      decide(*d, key, outcome_kind::done, "runner already launched",
             "already_served");
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

void job_checked(scaler_pointer self, const context_ptr& ctx,
                 const decision_ptr& d) {
  if (--d->checks_left == 0)
    launch(self, ctx, d);
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
               const decision_ptr& d, const pending_job& job) {
  auto key = job.event.key;
  auto installation = job.event.installation_id;
  auto query = job_status_query{job.event.repository, key.job_id};
  auto failed = [=](const std::string& what, const caf::error& err) {
    // A 404 right after a job was queued can be transient: never ack on it.
    decide(*d, key, outcome_kind::retry, what + self->system().render(err),
           "check_failed");
    job_checked(self, ctx, d);
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
                      job_checked(self, ctx, d);
                    },
                    [=](const caf::error& err) {
                      if (is_down(err))
                        self->state.clients.erase(installation);
                      failed("job check failed: ", err);
                    });
              });
}

/// Asks GitHub whether each granted job still waits.
void check_jobs(scaler_pointer self, const context_ptr& ctx,
                const decision_ptr& d) {
  d->checks_left = d->capacity.granted.size();
  for (auto& job : d->unique)
    if (contains(d->capacity.granted, job.event.key))
      check_job(self, ctx, d, job);
}

void reserve_capacity(scaler_pointer self, const context_ptr& ctx,
                      const decision_ptr& d) {
  auto needed = undecided_jobs(*d);
  if (needed.empty() && ctx->pool.min_idle == 0) {
    finish(self, ctx, d);
    return;
  }
  reservation_request req{{}, true};
  for (auto& job : d->unique)
    if (contains(needed, job.event.key))
      req.jobs.push_back(runner_spec{job.event.key,
                                     runner_target(ctx->pool, job.event),
                                     job.event.installation_id});
  self->request(ctx->ledger, ctx->timeouts.ledger, atom::reserve_v,
                std::move(req))
    .then(
      [=](const reservation& res) {
        d->capacity = res;
        apply_reservation(ctx, d, needed);
        // Only jobs that got a slot cost a GitHub call: over-cap jobs are
        // retried anyway, and checking them would spend the budget on every
        // retry of a burst.
        if (ctx->pool.job_queued_check && !res.granted.empty())
          check_jobs(self, ctx, d);
        else if (!res.granted.empty() || !res.replacements.empty()
                 || res.idle_topup > 0)
          launch(self, ctx, d);
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
  for (auto& job : d->unique)
    if (job.event.installation_id == 0) {
      auto target = runner_target(ctx->pool, job.event);
      targets.emplace(target.full_name(), target);
    }
  if (targets.empty()) {
    reserve_capacity(self, ctx, d);
    return;
  }
  auto left = std::make_shared<size_t>(targets.size());
  for (auto& [name, target] : targets) {
    auto resolved = [=, name = name](caf::expected<int64_t> id) {
      for (auto& job : d->unique) {
        if (job.event.installation_id != 0
            || runner_target(ctx->pool, job.event).full_name() != name)
          continue;
        if (id)
          job.event.installation_id = *id;
        else
          decide(*d, job.event.key, outcome_kind::retry,
                 "no installation: " + self->system().render(id.error()),
                 "installation_unknown");
      }
      if (--*left == 0)
        reserve_capacity(self, ctx, d);
    };
    self->request(ctx->github, ctx->timeouts.github_call, atom::lookup_v, target)
      .then([=](int64_t id) { resolved(id); },
            [=](caf::error& err) { resolved(std::move(err)); });
  }
}

void close_window(scaler_pointer self, const context_ptr& ctx) {
  auto& st = self->state;
  auto d = make_decision(st.open_window, std::move(st.waiting));
  st.open_window = 0;
  st.waiting.clear();
  st.waiting_jobs = 0;
  resolve_installations(self, ctx, d);
}

caf::result<batch_outcome> join_window(scaler_pointer self,
                                       const context_ptr& ctx,
                                       scale_request& req) {
  if (req.jobs.empty())
    return batch_outcome{};
  auto& st = self->state;
  auto promise = self->make_response_promise<batch_outcome>();
  st.waiting_jobs += req.jobs.size();
  st.waiting.push_back(scale_call{promise, std::move(req.jobs)});
  auto& window = ctx->window;
  if (st.open_window == 0) {
    st.open_window = ++st.last_window;
    if (window.window > caf::timespan{0})
      self->delayed_send(self, window.window, atom::flush_v, st.open_window);
  }
  if (window.window <= caf::timespan{0}
      || st.waiting_jobs >= static_cast<size_t>(std::max(1, window.max_batch)))
    close_window(self, ctx);
  return promise;
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
       github_app_actor github, job_retry_actor job_retry, metrics_ptr stats,
       uint64_t seed) {
  self->state.rng.seed(seed);
  auto ctx = std::make_shared<const scaler_context>(
    scaler_context{std::move(pool), window, retry, timeouts, std::move(ledger),
                   std::move(launcher), std::move(github), std::move(job_retry),
                   std::move(stats)});
  return {
    [=](atom::scale, scale_request& req) -> caf::result<batch_outcome> {
      return join_window(self, ctx, req);
    },
    [=](atom::flush, uint64_t window_id) {
      if (window_id == self->state.open_window)
        close_window(self, ctx);
    },
    [=](atom::interrupt, const std::string& instance_id) {
      return interrupt(self, ctx, instance_id);
    },
  };
}

} // namespace ghscale
