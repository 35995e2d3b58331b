#include "actors/job_retry.hpp"

#include "actors/backoff.hpp"
#include "actors/ops/log.hpp"
#include "transport/workflow_job.hpp"

#include <chrono>
#include <functional>
#include <iterator>
#include <memory>
#include <utility>

namespace ghscale {

namespace {

using retry_pointer = job_retry_actor::stateful_pointer<job_retry_state>;

/// How long a job's attempt count is remembered after its last re-check.
constexpr auto attempt_memory = std::chrono::hours(24);

struct retry_context {
  job_retry_config cfg;
  std::map<std::string, job_retry_route> routes;
  timeouts_config timeouts;
  metrics_ptr stats;
};
using context_ptr = std::shared_ptr<const retry_context>;

void count(const context_ptr& ctx, const std::string& pool,
           const std::string& outcome) {
  ctx->stats->add("ghscale_job_rechecks_total",
                  {{"pool", pool}, {"outcome", outcome}});
}

/// Ends one re-check: counted, and logged when something went wrong.
void finish(const context_ptr& ctx, const recheck& r, const std::string& outcome,
            const std::string& error = {}) {
  count(ctx, r.pool, outcome);
  if (error.empty())
    log::debug("job re-checked", {{"pool", r.pool},
                                  {"job", to_string(r.event.key)},
                                  {"outcome", outcome}});
  else
    log::warn("job re-check failed", {{"pool", r.pool},
                                      {"job", to_string(r.event.key)},
                                      {"step", outcome},
                                      {"error", error}});
}

void sweep(job_retry_state& st, caf::actor_clock::time_point now) {
  if (now - st.swept_at < std::chrono::minutes(1))
    return;
  st.swept_at = now;
  for (auto i = st.jobs.begin(); i != st.jobs.end();)
    i = now - i->second.last >= attempt_memory ? st.jobs.erase(i) : std::next(i);
}

void schedule(retry_pointer self, const context_ptr& ctx, recheck r) {
  auto& st = self->state;
  auto now = self->clock().now();
  sweep(st, now);
  if (ctx->routes.count(r.pool) == 0) {
    finish(ctx, r, "unknown_pool", "no route for pool " + r.pool);
    return;
  }
  auto& attempts = st.jobs[r.event.key];
  if (attempts.made >= ctx->cfg.max_attempts) {
    finish(ctx, r, "gave_up");
    return;
  }
  ++attempts.made;
  attempts.last = now;
  auto delay = jittered_backoff(ctx->cfg.delay, ctx->cfg.max_delay, attempts.made,
                                ctx->cfg.jitter, st.rng);
  auto id = st.next_id++;
  st.due.emplace(id, std::move(r));
  self->delayed_send(self, delay, atom::tick_v, id);
}

/// Puts the job back on its pool's queue in the webhook's own format.
void reinject(retry_pointer self, const context_ptr& ctx, const recheck& r) {
  auto& route = ctx->routes.at(r.pool);
  auto ev = r.event;
  ev.action = job_action::queued;
  std::vector<outgoing_message> body{{to_webhook_payload(ev), caf::timespan{0}}};
  self->request(route.queue, ctx->timeouts.aws_call, atom::enqueue_v, std::move(body))
    .then(
      [=](const batch_result& res) {
        if (!res.failed.empty()) {
          auto& e = res.failed.front();
          finish(ctx, r, "reinject_failed", e.code + ": " + e.message);
          return;
        }
        finish(ctx, r, "reinjected");
        log::info("job re-injected: still queued with no runner on its way",
                  {{"pool", r.pool}, {"job", to_string(r.event.key)}});
      },
      [=](const caf::error& err) {
        finish(ctx, r, "reinject_failed", self->system().render(err));
      });
}

/// The job still waits on GitHub: re-inject it unless a runner is coming.
void ask_ledger(retry_pointer self, const context_ptr& ctx, const recheck& r) {
  auto& route = ctx->routes.at(r.pool);
  self->request(route.ledger, ctx->timeouts.ledger, atom::recheck_v, r.event.key)
    .then(
      [=](bool on_its_way) {
        if (on_its_way)
          finish(ctx, r, "runner_on_its_way");
        else
          reinject(self, ctx, r);
      },
      [=](const caf::error& err) {
        finish(ctx, r, "ledger_failed", self->system().render(err));
      });
}

void check_status(retry_pointer self, const context_ptr& ctx, const recheck& r,
                  const installation_client_actor& client) {
  job_status_query query{r.event.repository, r.event.key.job_id};
  self->request(client, ctx->timeouts.github_call, atom::job_status_v, query)
    .then(
      [=](const std::string& status) {
        if (status == "queued")
          ask_ledger(self, ctx, r);
        else
          finish(ctx, r, "not_queued");
      },
      [=](const caf::error& err) {
        finish(ctx, r, "status_failed", self->system().render(err));
      });
}

/// Runs one due re-check: the job's installation client (looked up for
/// events that carry no installation), its status, then the ledger.
void run(retry_pointer self, const context_ptr& ctx, recheck r) {
  auto& github = ctx->routes.at(r.pool).github;
  auto with_client = [=](int64_t installation) {
    self->request(github, ctx->timeouts.github_call, atom::client_v, installation)
      .then([=](const installation_client_actor& client) {
              check_status(self, ctx, r, client);
            },
            [=](const caf::error& err) {
              finish(ctx, r, "client_failed", self->system().render(err));
            });
  };
  if (r.event.installation_id != 0) {
    with_client(r.event.installation_id);
    return;
  }
  self->request(github, ctx->timeouts.github_call, atom::lookup_v,
                r.event.repository)
    .then([=](int64_t installation) { with_client(installation); },
          [=](const caf::error& err) {
            finish(ctx, r, "client_failed", self->system().render(err));
          });
}

} // namespace

job_retry_actor::behavior_type
job_retry(job_retry_actor::stateful_pointer<job_retry_state> self,
          job_retry_config cfg, std::map<std::string, job_retry_route> routes,
          timeouts_config timeouts, metrics_ptr stats, uint64_t seed) {
  self->state.rng.seed(seed);
  auto ctx = std::make_shared<const retry_context>(
    retry_context{cfg, std::move(routes), timeouts, std::move(stats)});
  return {
    [=](atom::recheck, recheck& r) { schedule(self, ctx, std::move(r)); },
    [=](atom::tick, uint64_t id) {
      auto i = self->state.due.find(id);
      if (i == self->state.due.end())
        return;
      auto r = std::move(i->second);
      self->state.due.erase(i);
      run(self, ctx, std::move(r));
    },
  };
}

} // namespace ghscale
