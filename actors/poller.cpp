#include "actors/poller.hpp"

#include "actors/backoff.hpp"
#include "actors/log.hpp"
#include "actors/routing.hpp"
#include "transport/ec2_event.hpp"
#include "transport/workflow_job.hpp"

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <memory>
#include <utility>

namespace ghscale {

namespace {

using poller_pointer = poller_actor::stateful_pointer<poller_state>;

/// Backoff after a failed receive, so a broken queue never makes us spin.
constexpr auto receive_retry_base = std::chrono::seconds(1);
constexpr auto receive_retry_max = std::chrono::seconds(30);
/// SQS's longest visibility timeout: where poison is parked without a DLQ.
constexpr auto max_visibility = std::chrono::hours(12);

/// What a poller was spawned with, shared by its callbacks.
struct poller_context {
  queue_config queue;
  queue_actor source;
  queue_actor dead_letter;
  poller_routes routes;
  retry_config retry;
  timeouts_config timeouts;
  poll_loops_config loops;
  lease held;
  lease_keeper_actor registry;
  metrics_ptr stats;
};
using context_ptr = std::shared_ptr<const poller_context>;

/// One received batch on its way to outcomes.
/// A spot interruption warning on its way to the scalers.
struct pending_interruption {
  std::string receipt;
  int32_t receive_count = 1;
  std::string instance_id;
};

struct batch_work {
  std::vector<queue_message> messages;
  std::map<std::string, message_outcome> outcomes; // by receipt
  std::map<std::string, std::vector<pending_job>> jobs_by_pool;
  std::vector<pending_interruption> interruptions;
  std::map<std::string, std::string> job_by_receipt; // for the log
};
using work_ptr = std::shared_ptr<batch_work>;

/// Runs `done` once `tick` has been called `n` times (n > 0).
struct countdown {
  size_t left;
  std::function<void()> done;
  void tick() {
    if (--left == 0)
      done();
  }
};
using countdown_ptr = std::shared_ptr<countdown>;

std::string render_labels(const std::vector<std::string>& labels) {
  std::string out = "[";
  for (size_t i = 0; i < labels.size(); ++i)
    out += (i > 0 ? ", " : "") + labels[i];
  return out + "]";
}

message_outcome retry_outcome(poller_pointer self, const context_ptr& ctx,
                              const std::string& receipt, int32_t receive_count,
                              std::string reason) {
  auto delay = jittered_backoff(ctx->retry.base, ctx->retry.max, receive_count,
                                ctx->retry.jitter, self->state.rng);
  return message_outcome{receipt, outcome_kind::retry, delay, std::move(reason)};
}

message_outcome done_outcome(const std::string& receipt, std::string reason) {
  return message_outcome{receipt, outcome_kind::done, caf::timespan{0},
                         std::move(reason)};
}

void count_messages(const context_ptr& ctx, const std::string& outcome,
                    size_t n) {
  if (n > 0)
    ctx->stats->add("ghscale_messages_total",
                    {{"queue", ctx->queue.name}, {"outcome", outcome}},
                    static_cast<int64_t>(n));
}

/// Logs and counts what a batch call could not do: the message reappears
/// after its visibility timeout, so nothing is lost.
void count_failures(const context_ptr& ctx, const std::string& action,
                    size_t n, const std::string& why) {
  if (n == 0)
    return;
  ctx->stats->add("ghscale_queue_action_failures_total",
                  {{"queue", ctx->queue.name}, {"action", action}},
                  static_cast<int64_t>(n));
  log::warn("queue call failed for some messages",
            {{"queue", ctx->queue.name},
             {"loop", ctx->held.loop_id},
             {"action", action},
             {"messages", static_cast<uint64_t>(n)},
             {"error", why}});
}

void count_entry_failures(const context_ptr& ctx, const std::string& action,
                          const batch_result& result) {
  for (auto& e : result.failed)
    count_failures(ctx, action, 1, e.code + ": " + e.message);
}

// -- stopping -------------------------------------------------------------------

void stop(poller_pointer self, const context_ptr& ctx) {
  for (auto& waiter : self->state.drain_waiters)
    waiter.deliver(true);
  self->state.drain_waiters.clear();
  log::info("poller stopped",
            {{"queue", ctx->queue.name}, {"loop", ctx->held.loop_id}});
  self->quit();
}

/// Receive no more: stops at once when idle, else once the receive or batch
/// in flight is settled.
void wind_down(poller_pointer self, const context_ptr& ctx) {
  auto& st = self->state;
  st.draining = true;
  if (!st.receiving && !st.processing)
    stop(self, ctx);
}

void poll(poller_pointer self, const context_ptr& ctx);

/// The batch is settled: go on, or stop if a drain came in meanwhile.
void batch_settled(poller_pointer self, const context_ptr& ctx) {
  self->state.processing = false;
  if (self->state.draining)
    stop(self, ctx);
  else
    poll(self, ctx);
}

// -- applying outcomes ------------------------------------------------------------

/// One batch call on the source queue (`atom::remove` or
/// `atom::visibility`); per-entry failures are counted, and the message
/// comes back after its visibility timeout.
template <class Atom, class Entries>
void queue_batch_call(poller_pointer self, const context_ptr& ctx, Atom call,
                      const std::string& action, Entries entries,
                      std::string outcome, countdown_ptr pending) {
  if (entries.empty()) {
    pending->tick();
    return;
  }
  auto n = entries.size();
  self->request(ctx->source, ctx->timeouts.aws_call, call, std::move(entries))
    .then(
      [=](const batch_result& result) {
        count_messages(ctx, outcome, result.succeeded.size());
        count_entry_failures(ctx, action, result);
        pending->tick();
      },
      [=](const caf::error& err) {
        count_failures(ctx, action, n, self->system().render(err));
        pending->tick();
      });
}

void remove_messages(poller_pointer self, const context_ptr& ctx,
                     std::vector<std::string> receipts, std::string outcome,
                     countdown_ptr pending) {
  queue_batch_call(self, ctx, atom::remove_v, "remove", std::move(receipts),
                   std::move(outcome), std::move(pending));
}

void change_visibility(poller_pointer self, const context_ptr& ctx,
                       std::vector<visibility_change> changes,
                       std::string outcome, countdown_ptr pending) {
  queue_batch_call(self, ctx, atom::visibility_v, "visibility",
                   std::move(changes), std::move(outcome), std::move(pending));
}

/// Dead-letters poison messages, then deletes exactly those the dead-letter
/// queue accepted.
void dead_letter(poller_pointer self, const context_ptr& ctx,
                 std::vector<queue_message> poison, countdown_ptr pending) {
  if (poison.empty()) {
    pending->tick();
    return;
  }
  std::vector<outgoing_message> letters;
  std::vector<std::string> receipts;
  for (auto& msg : poison) {
    letters.push_back(outgoing_message{std::move(msg.body), caf::timespan{0}});
    receipts.push_back(std::move(msg.receipt));
  }
  auto n = letters.size();
  self->request(ctx->dead_letter, ctx->timeouts.aws_call, atom::enqueue_v,
                std::move(letters))
    .then(
      [=](const batch_result& result) {
        count_entry_failures(ctx, "dead_letter", result);
        std::vector<std::string> accepted;
        for (auto& index : result.succeeded) {
          auto i = std::strtoul(index.c_str(), nullptr, 10);
          if (i < receipts.size())
            accepted.push_back(receipts[i]);
        }
        remove_messages(self, ctx, std::move(accepted), "dead_lettered",
                        pending);
      },
      [=](const caf::error& err) {
        count_failures(ctx, "dead_letter", n, self->system().render(err));
        pending->tick();
      });
}

void apply_outcomes(poller_pointer self, const context_ptr& ctx,
                    const work_ptr& work) {
  std::vector<std::string> done;
  std::vector<visibility_change> retries;
  std::vector<visibility_change> parked;
  std::vector<queue_message> poison;
  for (auto& msg : work->messages) {
    auto i = work->outcomes.find(msg.receipt);
    auto outcome = i != work->outcomes.end()
                     ? i->second
                     : retry_outcome(self, ctx, msg.receipt, msg.receive_count,
                                     "no outcome for the message");
    auto job = work->job_by_receipt.find(msg.receipt);
    log::debug("message outcome",
               {{"queue", ctx->queue.name},
                {"message_id", msg.message_id},
                {"job", job != work->job_by_receipt.end() ? job->second : ""},
                {"outcome", to_string(outcome.kind)},
                {"reason", outcome.reason}});
    switch (outcome.kind) {
      case outcome_kind::done:
        done.push_back(msg.receipt);
        break;
      case outcome_kind::retry:
        retries.push_back(visibility_change{msg.receipt, outcome.delay});
        break;
      case outcome_kind::poison:
        if (ctx->dead_letter) {
          log::warn("dead-lettering message",
                    {{"queue", ctx->queue.name},
                     {"loop", ctx->held.loop_id},
                     {"message_id", msg.message_id},
                     {"reason", outcome.reason}});
          poison.push_back(msg);
        } else {
          log::error("poison message kept: no dead-letter queue",
                     {{"queue", ctx->queue.name},
                      {"loop", ctx->held.loop_id},
                      {"message_id", msg.message_id},
                      {"reason", outcome.reason}});
          parked.push_back(visibility_change{msg.receipt, max_visibility});
        }
        break;
    }
  }
  log::info("batch outcome", {{"queue", ctx->queue.name},
                              {"loop", ctx->held.loop_id},
                              {"messages", static_cast<uint64_t>(work->messages.size())},
                              {"done", static_cast<uint64_t>(done.size())},
                              {"retry", static_cast<uint64_t>(retries.size())},
                              {"poison", static_cast<uint64_t>(poison.size() + parked.size())}});
  auto pending = std::make_shared<countdown>(
    countdown{4, [=] { batch_settled(self, ctx); }});
  remove_messages(self, ctx, std::move(done), "acked", pending);
  change_visibility(self, ctx, std::move(retries), "retried", pending);
  change_visibility(self, ctx, std::move(parked), "poison_kept", pending);
  dead_letter(self, ctx, std::move(poison), pending);
}

// -- deciding outcomes --------------------------------------------------------------

/// Decides a message on its own where it can; queued jobs wait for their
/// pool's scaler.
void classify(poller_pointer self, const context_ptr& ctx, batch_work& work,
              const queue_message& msg) {
  auto decided = [&](message_outcome o) {
    work.outcomes.emplace(msg.receipt, std::move(o));
  };
  auto interrupted = parse_spot_interruption(msg.body);
  if (!interrupted) {
    decided(message_outcome{msg.receipt, outcome_kind::poison, caf::timespan{0},
                            self->system().render(interrupted.error())});
    return;
  }
  if (*interrupted) {
    work.interruptions.push_back(
      pending_interruption{msg.receipt, msg.receive_count, std::move(**interrupted)});
    return;
  }
  auto ev = parse_job_event(msg.body);
  if (!ev) {
    decided(message_outcome{msg.receipt, outcome_kind::poison, caf::timespan{0},
                            self->system().render(ev.error())});
    return;
  }
  work.job_by_receipt.emplace(msg.receipt, to_string(ev->key));
  if (ev->action == job_action::waiting) {
    decided(done_outcome(msg.receipt, "job waits for approval"));
    return;
  }
  auto* pool = route(ctx->routes.pools, ctx->queue.name, ev->labels);
  if (pool == nullptr) {
    auto reason = "no pool matches labels " + render_labels(ev->labels);
    if (ev->action == job_action::queued) {
      ctx->stats->add("ghscale_jobs_unrouted_total", {{"queue", ctx->queue.name}});
      log::warn("job matches no pool",
                {{"queue", ctx->queue.name},
                 {"loop", ctx->held.loop_id},
                 {"job", to_string(ev->key)},
                 {"labels", render_labels(ev->labels)}});
    }
    decided(done_outcome(msg.receipt, std::move(reason)));
    return;
  }
  if (ev->action != job_action::queued) {
    auto ledger = ctx->routes.ledgers.find(pool->name);
    if (ledger != ctx->routes.ledgers.end())
      self->send(ledger->second, atom::observe_v, *ev);
    decided(done_outcome(msg.receipt, "lifecycle event recorded"));
    return;
  }
  if (ctx->routes.scalers.count(pool->name) == 0) {
    log::error("no scaler for pool", {{"queue", ctx->queue.name},
                                      {"loop", ctx->held.loop_id},
                                      {"pool", pool->name}});
    decided(retry_outcome(self, ctx, msg.receipt, msg.receive_count,
                          "no scaler for pool " + pool->name));
    return;
  }
  work.jobs_by_pool[pool->name].push_back(
    pending_job{msg.receipt, std::move(*ev), msg.receive_count, msg.sent_at});
}

/// Keeps the scaler's outcomes for receipts it was sent, nothing else.
void accept_outcomes(const work_ptr& work, const std::vector<pending_job>& sent,
                     batch_outcome& answer) {
  for (auto& o : answer.outcomes) {
    auto was_sent = std::any_of(sent.begin(), sent.end(), [&](auto& job) {
      return job.receipt == o.receipt;
    });
    if (was_sent)
      work->outcomes.emplace(o.receipt, std::move(o));
  }
}

/// The pools fed by this queue each look for the interrupted instance; the
/// message is done once one knew it, or none did and none failed.
void ask_about_interruption(poller_pointer self, const context_ptr& ctx,
                            const work_ptr& work, const pending_interruption& in,
                            countdown_ptr pending) {
  std::vector<scaler_actor> scalers;
  for (auto& pool : ctx->routes.pools) {
    auto scaler = ctx->routes.scalers.find(pool.name);
    if (pool.queue == ctx->queue.name && scaler != ctx->routes.scalers.end())
      scalers.push_back(scaler->second);
  }
  struct answers {
    size_t left;
    bool known = false;
    std::string failure;
  };
  auto got = std::make_shared<answers>(answers{scalers.size(), false, {}});
  auto settle = [=] {
    if (got->known || got->failure.empty())
      work->outcomes.emplace(in.receipt,
                             done_outcome(in.receipt,
                                          got->known ? "spot interruption handled"
                                                     : "interrupted instance of no pool"));
    else
      work->outcomes.emplace(in.receipt,
                             retry_outcome(self, ctx, in.receipt, in.receive_count,
                                           got->failure));
    pending->tick();
  };
  if (scalers.empty()) {
    settle();
    return;
  }
  for (auto& scaler : scalers)
    self->request(scaler, ctx->timeouts.scale, atom::interrupt_v, in.instance_id)
      .then(
        [=](bool known) {
          got->known = got->known || known;
          if (--got->left == 0)
            settle();
        },
        [=](const caf::error& err) {
          got->failure = "spot interruption: " + self->system().render(err);
          if (--got->left == 0)
            settle();
        });
}

void ask_scalers(poller_pointer self, const context_ptr& ctx,
                 const work_ptr& work) {
  if (work->jobs_by_pool.empty() && work->interruptions.empty()) {
    apply_outcomes(self, ctx, work);
    return;
  }
  auto pending = std::make_shared<countdown>(
    countdown{work->jobs_by_pool.size() + work->interruptions.size(),
              [=] { apply_outcomes(self, ctx, work); }});
  for (auto& in : work->interruptions)
    ask_about_interruption(self, ctx, work, in, pending);
  for (auto& [pool, jobs] : work->jobs_by_pool) {
    auto& scaler = ctx->routes.scalers.at(pool);
    self->request(scaler, ctx->timeouts.scale, atom::scale_v, scale_request{jobs})
      .then(
        [=, sent = jobs](batch_outcome& answer) {
          accept_outcomes(work, sent, answer);
          pending->tick();
        },
        [=, sent = jobs, pool = pool](const caf::error& err) {
          auto reason = "scaler " + pool + ": " + self->system().render(err);
          for (auto& job : sent)
            work->outcomes.emplace(job.receipt,
                                   retry_outcome(self, ctx, job.receipt,
                                                 job.receive_count, reason));
          pending->tick();
        });
  }
}

void process(poller_pointer self, const context_ptr& ctx,
             std::vector<queue_message> messages) {
  self->state.processing = true;
  auto work = std::make_shared<batch_work>();
  work->messages = std::move(messages);
  for (auto& msg : work->messages)
    classify(self, ctx, *work, msg);
  ask_scalers(self, ctx, work);
}

// -- receiving --------------------------------------------------------------------

/// Drain came while a receive was in flight: hand its messages back to the
/// queue right away instead of holding them for their visibility timeout.
void release(poller_pointer self, const context_ptr& ctx,
             const std::vector<queue_message>& messages) {
  std::vector<visibility_change> changes;
  for (auto& msg : messages)
    changes.push_back(visibility_change{msg.receipt, caf::timespan{0}});
  self->state.processing = true;
  change_visibility(self, ctx, std::move(changes), "released",
                    std::make_shared<countdown>(
                      countdown{1, [=] { batch_settled(self, ctx); }}));
}

void poll(poller_pointer self, const context_ptr& ctx) {
  auto& st = self->state;
  if (st.draining || st.receiving || st.processing)
    return;
  st.receiving = true;
  auto& q = ctx->queue;
  self->request(ctx->source, q.wait_time + ctx->timeouts.aws_call,
                atom::receive_v,
                receive_request{q.batch_size, q.wait_time, q.visibility_timeout})
    .then(
      [=](received_batch& batch) {
        auto& st = self->state;
        st.receiving = false;
        st.receive_failures = 0;
        if (st.draining)
          release(self, ctx, batch.messages);
        else
          process(self, ctx, std::move(batch.messages));
      },
      [=](const caf::error& err) {
        auto& st = self->state;
        st.receiving = false;
        if (st.draining) {
          stop(self, ctx);
          return;
        }
        auto delay = jittered_backoff(receive_retry_base, receive_retry_max,
                                      ++st.receive_failures, ctx->retry.jitter,
                                      st.rng);
        ctx->stats->add("ghscale_receive_errors_total", {{"queue", q.name}});
        log::warn("receive failed, polling again after a backoff",
                  {{"queue", q.name},
                   {"loop", ctx->held.loop_id},
                   {"error", self->system().render(err)},
                   {"retry_in_ms",
                    static_cast<int64_t>(
                      std::chrono::duration_cast<std::chrono::milliseconds>(delay)
                        .count())}});
        self->delayed_send(self, delay, atom::poll_v);
      });
}

// -- heartbeats ---------------------------------------------------------------------

/// One heartbeat, on the loop's own timer so receives never wait for it. A
/// reply slower than the next beat is of no use, hence that timeout. A failed
/// heartbeat (registry restarting, timeout) changes nothing: the registry
/// revives or fences loops by what it hears, and a loop it no longer knows is
/// told to stop at the next heartbeat that gets through.
void heartbeat(poller_pointer self, const context_ptr& ctx) {
  if (self->state.draining)
    return;
  self->delayed_send(self, ctx->loops.heartbeat, atom::heartbeat_v);
  self->request(ctx->registry, ctx->loops.heartbeat, atom::heartbeat_v,
                ctx->held)
    .then(
      [=](heartbeat_verdict verdict) {
        if (verdict == heartbeat_verdict::keep_going || self->state.draining)
          return;
        log::info("poller told to stop by the registry",
                  {{"queue", ctx->queue.name}, {"loop", ctx->held.loop_id}});
        wind_down(self, ctx);
      },
      [=](const caf::error& err) {
        log::debug("heartbeat failed, polling on",
                   {{"queue", ctx->queue.name},
                    {"loop", ctx->held.loop_id},
                    {"error", self->system().render(err)}});
      });
}

} // namespace

poller_actor::behavior_type
poller(poller_actor::stateful_pointer<poller_state> self, poller_setup setup,
       lease held, lease_keeper_actor registry, metrics_ptr stats,
       uint64_t seed) {
  self->state.rng.seed(seed);
  auto ctx = std::make_shared<const poller_context>(poller_context{
    std::move(setup.queue), std::move(setup.source),
    std::move(setup.dead_letter), std::move(setup.routes), setup.retry,
    setup.timeouts, setup.loops, std::move(held), std::move(registry),
    std::move(stats)});
  self->send(self, atom::poll_v);
  self->delayed_send(self, ctx->loops.heartbeat, atom::heartbeat_v);
  return {
    [=](atom::poll) { poll(self, ctx); },
    [=](atom::heartbeat) { heartbeat(self, ctx); },
    [=](atom::drain) -> caf::result<bool> {
      auto promise = self->make_response_promise<bool>();
      self->state.drain_waiters.push_back(promise);
      wind_down(self, ctx);
      return promise;
    },
  };
}

} // namespace ghscale
