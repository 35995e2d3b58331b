#include "actors/poller.hpp"

#include "actors/backoff.hpp"
#include "actors/clock.hpp"
#include "actors/ops/log.hpp"
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
/// SQS's longest visibility timeout, counted from the receive: where poison
/// is parked without a DLQ, and how long a message can be kept hidden.
constexpr auto max_visibility = std::chrono::hours(12);
/// Outcomes that come close together go out in one batch call: at most
/// this much later, or at once when a call's worth (10) is ready.
constexpr auto flush_delay = std::chrono::milliseconds(100);
constexpr size_t queue_batch = 10;
/// After a failed extension call, the next try comes this soon.
constexpr auto extend_retry = std::chrono::seconds(1);

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

/// Messages the loop still answers for: held, or settled and not applied.
size_t in_hand(const poller_state& st) {
  return st.held.size() + st.settled.size() + st.applying;
}

/// Stops once draining and nothing is in flight or in hand.
void stop_if_done(poller_pointer self, const context_ptr& ctx) {
  auto& st = self->state;
  if (!st.draining || st.receiving || in_hand(st) > 0)
    return;
  for (auto& waiter : st.drain_waiters)
    waiter.deliver(true);
  st.drain_waiters.clear();
  log::info("poller stopped",
            {{"queue", ctx->queue.name}, {"loop", ctx->held.loop_id}});
  self->quit();
}

void flush(poller_pointer self, const context_ptr& ctx);

/// Receive no more; stop once what is held is settled.
void wind_down(poller_pointer self, const context_ptr& ctx) {
  self->state.draining = true;
  flush(self, ctx);
  stop_if_done(self, ctx);
}

void poll(poller_pointer self, const context_ptr& ctx);

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
                 std::vector<std::pair<queue_message, std::string>> poison,
                 countdown_ptr pending) {
  if (poison.empty()) {
    pending->tick();
    return;
  }
  std::vector<outgoing_message> letters;
  std::vector<std::string> receipts;
  for (auto& [msg, reason] : poison) {
    letters.push_back(dead_letter_for(msg, ctx->queue.name, reason));
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

/// Applies every outcome settled so far, in as few calls as it takes.
void flush(poller_pointer self, const context_ptr& ctx) {
  auto& st = self->state;
  st.flush_armed = false;
  if (st.settled.empty())
    return;
  auto batch = std::move(st.settled);
  st.settled.clear();
  std::vector<std::string> done;
  std::vector<visibility_change> retries;
  std::vector<visibility_change> parked;
  std::vector<std::pair<queue_message, std::string>> poison; // with its reason
  for (auto& [held, outcome] : batch) {
    auto& msg = held.msg;
    log::debug("message outcome",
               {{"queue", ctx->queue.name},
                {"message_id", msg.message_id},
                {"job", held.job},
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
          poison.emplace_back(msg, outcome.reason);
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
  log::info("messages settled",
            {{"queue", ctx->queue.name},
             {"loop", ctx->held.loop_id},
             {"messages", static_cast<uint64_t>(batch.size())},
             {"done", static_cast<uint64_t>(done.size())},
             {"retry", static_cast<uint64_t>(retries.size())},
             {"poison", static_cast<uint64_t>(poison.size() + parked.size())},
             {"held", static_cast<uint64_t>(st.held.size())}});
  auto n = batch.size();
  st.applying += n;
  auto pending = std::make_shared<countdown>(countdown{4, [=] {
    self->state.applying -= n;
    stop_if_done(self, ctx);
    poll(self, ctx);
  }});
  remove_messages(self, ctx, std::move(done), "acked", pending);
  change_visibility(self, ctx, std::move(retries), "retried", pending);
  change_visibility(self, ctx, std::move(parked), "poison_kept", pending);
  dead_letter(self, ctx, std::move(poison), pending);
}

/// The outcome of a held message is known: it goes out with the next flush.
/// A second outcome for the same receipt is ignored.
void settle(poller_pointer self, const context_ptr& ctx, message_outcome outcome) {
  auto& st = self->state;
  auto i = st.held.find(outcome.receipt);
  if (i == st.held.end())
    return;
  // Draining, what goes back stays hidden until every long poll still out
  // has returned: a draining loop would receive it again, and each receive
  // counts towards the dead-letter queue.
  if (st.draining && outcome.kind == outcome_kind::retry)
    outcome.delay = std::max(outcome.delay, ctx->queue.wait_time + std::chrono::seconds(1));
  st.settled.push_back(settled_message{std::move(i->second), std::move(outcome)});
  st.held.erase(i);
  if (st.settled.size() >= queue_batch || st.draining) {
    flush(self, ctx);
  } else if (!st.flush_armed) {
    st.flush_armed = true;
    self->delayed_send(self, flush_delay, atom::flush_v);
  }
}

// -- keeping messages hidden ---------------------------------------------------------

/// Arms the visibility timer for half a visibility timeout before the
/// first held message would reappear (one timer at a time).
void arm_extension(poller_pointer self, const context_ptr& ctx) {
  auto& st = self->state;
  std::optional<caf::timespan> first;
  for (auto& [receipt, held] : st.held)
    if (!held.superseded)
      first = first ? std::min(*first, held.hidden_until) : held.hidden_until;
  if (!first || st.extending)
    return;
  auto at = *first - ctx->queue.visibility_timeout / 2;
  if (st.extend_at && *st.extend_at <= at)
    return;
  st.extend_at = at;
  self->delayed_send(self, std::max(at - now(self), caf::timespan{0}),
                     atom::visibility_v);
}

/// Whether a failed extension means the receipt is no longer the newest.
bool receipt_superseded(const batch_entry_error& e) {
  return e.code == "ReceiptHandleIsInvalid" || e.code == "MessageNotInflight"
         || e.code == "InvalidParameterValue";
}

/// Keeps every held message hidden for another visibility timeout, in one
/// batch call (split in tens by the queue), up to the 12-hour bound.
void extend(poller_pointer self, const context_ptr& ctx) {
  auto& st = self->state;
  auto t = now(self);
  if (st.extend_at && *st.extend_at <= t)
    st.extend_at.reset();
  if (st.extending)
    return;
  std::vector<visibility_change> changes;
  for (auto& [receipt, held] : st.held) {
    auto until = std::min(t + ctx->queue.visibility_timeout,
                          held.received_at + max_visibility);
    if (held.superseded || until <= held.hidden_until)
      continue;
    changes.push_back(visibility_change{receipt, until - t});
  }
  if (changes.empty())
    return;
  st.extending = true;
  auto n = changes.size();
  self->request(ctx->source, ctx->timeouts.aws_call, atom::visibility_v, changes)
    .then(
      [=](const batch_result& result) {
        auto& st = self->state;
        st.extending = false;
        st.extend_failures = 0;
        ctx->stats->add("ghscale_visibility_extended_total",
                        {{"queue", ctx->queue.name}},
                        static_cast<int64_t>(result.succeeded.size()));
        for (auto& change : changes)
          if (auto held = st.held.find(change.receipt); held != st.held.end())
            held->second.hidden_until = t + change.delay;
        for (auto& e : result.failed) {
          auto held = st.held.find(e.id);
          if (held == st.held.end())
            continue;
          if (receipt_superseded(e)) {
            held->second.superseded = true;
            log::info("message received again elsewhere; its job's outcome "
                      "goes to the newest receipt",
                      {{"queue", ctx->queue.name},
                       {"message_id", held->second.msg.message_id},
                       {"job", held->second.job}});
          } else {
            held->second.hidden_until = t; // try again at the next timer
            count_failures(ctx, "extend", 1, e.code + ": " + e.message);
          }
        }
        arm_extension(self, ctx);
      },
      [=](const caf::error& err) {
        auto& st = self->state;
        st.extending = false;
        count_failures(ctx, "extend", n, self->system().render(err));
        auto retry = jittered_backoff(extend_retry, ctx->queue.visibility_timeout / 4,
                                      ++st.extend_failures, ctx->retry.jitter, st.rng);
        st.extend_at = now(self) + retry;
        self->delayed_send(self, retry, atom::visibility_v);
      });
}

// -- deciding outcomes --------------------------------------------------------------

/// A spot interruption warning on its way to the scalers.
struct pending_interruption {
  std::string receipt;
  int32_t receive_count = 1;
  std::string instance_id;
};

/// The pools fed by this queue each look for the interrupted instance; the
/// message is done once one knew it, or none did and none failed.
void ask_about_interruption(poller_pointer self, const context_ptr& ctx,
                            const pending_interruption& in) {
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
  auto decided = [=] {
    if (got->known || got->failure.empty())
      settle(self, ctx,
             done_outcome(in.receipt, got->known ? "spot interruption handled"
                                                 : "interrupted instance of no pool"));
    else
      settle(self, ctx, retry_outcome(self, ctx, in.receipt, in.receive_count,
                                      got->failure));
  };
  if (scalers.empty()) {
    decided();
    return;
  }
  for (auto& scaler : scalers)
    self->request(scaler, ctx->timeouts.scale, atom::interrupt_v, in.instance_id)
      .then(
        [=](bool known) {
          got->known = got->known || known;
          if (--got->left == 0)
            decided();
        },
        [=](const caf::error& err) {
          got->failure = "spot interruption: " + self->system().render(err);
          if (--got->left == 0)
            decided();
        });
}

/// Asks the pool's scaler for one job's outcome: each job settles on its
/// own, so a job waiting for GitHub's budget holds back no other.
void ask_scaler(poller_pointer self, const context_ptr& ctx,
                const std::string& pool, pending_job job) {
  auto& scaler = ctx->routes.scalers.at(pool);
  auto receipt = job.receipt;
  auto receive_count = job.receive_count;
  self->request(scaler, ctx->timeouts.scale, atom::scale_v,
                scale_request{{std::move(job)}})
    .then(
      [=](batch_outcome& answer) {
        auto mine = std::find_if(answer.outcomes.begin(), answer.outcomes.end(),
                                 [&](auto& o) { return o.receipt == receipt; });
        if (mine != answer.outcomes.end())
          settle(self, ctx, std::move(*mine));
        else
          settle(self, ctx, retry_outcome(self, ctx, receipt, receive_count,
                                          "scaler " + pool
                                            + " gave no outcome for the message"));
      },
      [=](const caf::error& err) {
        settle(self, ctx, retry_outcome(self, ctx, receipt, receive_count,
                                        "scaler " + pool + ": "
                                          + self->system().render(err)));
      });
}

/// Decides a message on its own where it can; queued jobs go to their
/// pool's scaler, spot interruption warnings to the queue's scalers.
void classify(poller_pointer self, const context_ptr& ctx,
              const queue_message& msg) {
  auto decided = [&](message_outcome o) { settle(self, ctx, std::move(o)); };
  auto interrupted = parse_spot_interruption(msg.body);
  if (!interrupted) {
    decided(message_outcome{msg.receipt, outcome_kind::poison, caf::timespan{0},
                            self->system().render(interrupted.error())});
    return;
  }
  if (*interrupted) {
    ask_about_interruption(
      self, ctx,
      pending_interruption{msg.receipt, msg.receive_count, std::move(**interrupted)});
    return;
  }
  auto ev = parse_job_event(msg.body);
  if (!ev) {
    decided(message_outcome{msg.receipt, outcome_kind::poison, caf::timespan{0},
                            self->system().render(ev.error())});
    return;
  }
  self->state.held.at(msg.receipt).job = to_string(ev->key);
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
  ask_scaler(self, ctx, pool->name,
             pending_job{msg.receipt, std::move(*ev), msg.receive_count, msg.sent_at});
}

// -- receiving --------------------------------------------------------------------

/// The loop answers for `msg` from now on, received at `t`.
void hold(poller_pointer self, const context_ptr& ctx, queue_message msg,
          caf::timespan t) {
  auto receipt = msg.receipt;
  self->state.held.insert_or_assign(
    std::move(receipt),
    held_message{std::move(msg), "", t, t + ctx->queue.visibility_timeout, false});
}

void take(poller_pointer self, const context_ptr& ctx,
          std::vector<queue_message> messages) {
  auto& st = self->state;
  auto t = now(self);
  std::vector<std::string> receipts;
  for (auto& msg : messages) {
    receipts.push_back(msg.receipt);
    hold(self, ctx, std::move(msg), t);
  }
  // Classifying may settle a message at once: look each one up again.
  for (auto& receipt : receipts)
    if (auto i = st.held.find(receipt); i != st.held.end())
      classify(self, ctx, i->second.msg);
  arm_extension(self, ctx);
}

/// A receive came back after the loop began stopping: hand its messages
/// back to the queue at once instead of holding them.
void release(poller_pointer self, const context_ptr& ctx,
             std::vector<queue_message> messages) {
  auto t = now(self);
  for (auto& msg : messages) {
    auto receipt = msg.receipt;
    hold(self, ctx, std::move(msg), t);
    settle(self, ctx, message_outcome{receipt, outcome_kind::retry,
                                      caf::timespan{0}, "released: the loop stops"});
  }
}

void poll(poller_pointer self, const context_ptr& ctx) {
  auto& st = self->state;
  auto& q = ctx->queue;
  auto room = static_cast<int64_t>(q.max_in_flight) - static_cast<int64_t>(in_hand(st));
  if (st.draining || st.receiving || room <= 0)
    return;
  st.receiving = true;
  auto max = static_cast<int32_t>(std::min<int64_t>(q.batch_size, room));
  self->request(ctx->source, q.wait_time + ctx->timeouts.aws_call,
                atom::receive_v, receive_request{max, q.wait_time, q.visibility_timeout})
    .then(
      [=](received_batch& batch) {
        auto& st = self->state;
        st.receiving = false;
        st.receive_failures = 0;
        if (st.draining) {
          release(self, ctx, std::move(batch.messages));
          stop_if_done(self, ctx);
          return;
        }
        if (batch.messages.empty())
          log::debug("empty receive",
                     {{"queue", ctx->queue.name}, {"loop", ctx->held.loop_id}});
        else
          take(self, ctx, std::move(batch.messages));
        poll(self, ctx);
      },
      [=](const caf::error& err) {
        auto& st = self->state;
        st.receiving = false;
        if (st.draining) {
          stop_if_done(self, ctx);
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
                   {"retry_in_ms", to_ms(delay)}});
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
    [=](atom::visibility) { extend(self, ctx); },
    [=](atom::flush) { flush(self, ctx); },
    [=](atom::drain) -> caf::result<bool> {
      auto promise = self->make_response_promise<bool>();
      self->state.drain_waiters.push_back(promise);
      wind_down(self, ctx);
      return promise;
    },
  };
}

} // namespace ghscale
