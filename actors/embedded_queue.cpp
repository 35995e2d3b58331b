#include "actors/embedded_queue.hpp"

#include "actors/clock.hpp"
#include "actors/log.hpp"

#include <algorithm>
#include <limits>

namespace ghscale {

namespace {

using queue_pointer = embedded_queue_actor::stateful_pointer<embedded_queue_state>;
using stored_message = embedded_queue_state::stored_message;

/// SQS answers at most 10 messages per receive, and at least one.
constexpr int32_t max_batch = 10;

label_set queue_label(queue_pointer self) {
  return {{"queue", self->state.cfg.name}};
}

const char* invalid_receipt = "ReceiptHandleIsInvalid";

batch_entry_error receipt_error(const std::string& receipt) {
  return {receipt, invalid_receipt, "the receipt handle is not the latest of any message"};
}

/// Moves a message to a new place in the delivery order.
void reschedule(queue_pointer self, uint64_t seq, stored_message& msg,
                caf::timespan visible_at) {
  auto& index = self->state.by_visible_at;
  index.erase({msg.visible_at, seq});
  msg.visible_at = visible_at;
  index.emplace(visible_at, seq);
}

bool has_visible(queue_pointer self) {
  auto& index = self->state.by_visible_at;
  return !index.empty() && index.begin()->first <= now(self);
}

void serve_waiting(queue_pointer self);

/// The dead-letter queue refused or did not answer: the message stays here
/// and is redriven again at its next delivery.
void abort_redrive(queue_pointer self, uint64_t seq, const std::string& why) {
  auto& msg = self->state.messages.at(seq);
  log::warn("redrive failed", {{"queue", self->state.cfg.name},
                               {"message", msg.id}, {"reason", why}});
  msg.redriving = false;
  msg.visible_at = now(self);
  self->state.by_visible_at.emplace(msg.visible_at, seq);
  serve_waiting(self);
}

/// Hands a message that was received too often to the dead-letter queue; it
/// leaves this queue once the dead-letter queue has it. The move gets one
/// visibility timeout, like any other delivery.
void redrive(queue_pointer self, uint64_t seq) {
  auto& st = self->state;
  auto& msg = st.messages.at(seq);
  st.by_visible_at.erase({msg.visible_at, seq});
  st.receipts.erase(msg.receipt);
  msg.redriving = true;
  std::vector<outgoing_message> moved{{msg.body, caf::timespan{0}}};
  self->request(st.dead_letter, st.cfg.visibility_timeout, atom::enqueue_v,
                std::move(moved))
    .then(
      [=](const batch_result& res) {
        if (!res.failed.empty()) {
          abort_redrive(self, seq, res.failed.front().code);
          return;
        }
        auto& st = self->state;
        log::info("redriven", {{"queue", st.cfg.name},
                               {"message", st.messages.at(seq).id},
                               {"receive_count", st.messages.at(seq).receive_count}});
        st.messages.erase(seq);
        st.stats->add("ghscale_queue_redriven_total", queue_label(self));
      },
      [=](const caf::error& err) {
        abort_redrive(self, seq, self->system().render(err));
      });
}

/// One delivery: a fresh receipt (the older one becomes invalid) and
/// invisibility until `visible_at`.
queue_message deliver(queue_pointer self, uint64_t seq, stored_message& msg,
                      caf::timespan visible_at) {
  auto& st = self->state;
  ++msg.receive_count;
  st.receipts.erase(msg.receipt);
  msg.receipt = "r-" + std::to_string(st.next_receipt++);
  st.receipts.emplace(msg.receipt, seq);
  reschedule(self, seq, msg, visible_at);
  st.stats->add("ghscale_queue_received_total", queue_label(self));
  return {msg.id, msg.receipt, msg.body, msg.receive_count, msg.sent_at};
}

/// Up to `max` visible messages in delivery order, redriving those that
/// were received `max_receive_count` times already.
received_batch take_visible(queue_pointer self, int32_t max,
                            caf::timespan visibility) {
  auto& st = self->state;
  auto t = now(self);
  received_batch batch;
  while (static_cast<int32_t>(batch.messages.size()) < max && has_visible(self)) {
    auto seq = st.by_visible_at.begin()->second;
    auto& msg = st.messages.at(seq);
    if (st.dead_letter && msg.receive_count >= st.cfg.max_receive_count)
      redrive(self, seq);
    else
      batch.messages.push_back(deliver(self, seq, msg, t + visibility));
  }
  return batch;
}

/// Schedules a wake-up for the earliest moment a waiting receive can be
/// answered: a message becoming visible or a long-poll deadline. Nothing is
/// scheduled while nobody waits: depth is computed from the clock anyway.
void arm_wake_up(queue_pointer self) {
  auto& st = self->state;
  if (st.waiting.empty())
    return;
  auto t = now(self);
  auto due = std::min_element(st.waiting.begin(), st.waiting.end(),
                              [](const auto& a, const auto& b) {
                                return a.deadline < b.deadline;
                              })->deadline;
  auto next = st.by_visible_at.upper_bound(
    {t, std::numeric_limits<uint64_t>::max()});
  if (next != st.by_visible_at.end())
    due = std::min(due, next->first);
  if (!st.wake_ups.empty() && *st.wake_ups.begin() <= due)
    return; // an earlier wake-up re-arms when it fires
  st.wake_ups.insert(due);
  self->delayed_send(self, due - t, atom::poll_v);
}

/// Answers held receives in arrival order while messages are visible, then
/// those whose wait is over with an empty batch.
void serve_waiting(queue_pointer self) {
  auto& st = self->state;
  while (!st.waiting.empty() && has_visible(self)) {
    auto& first = st.waiting.front();
    auto batch = take_visible(self, first.max_messages, first.visibility);
    if (batch.messages.empty())
      continue; // everything visible went to the dead-letter queue
    first.promise.deliver(std::move(batch));
    st.waiting.pop_front();
  }
  auto t = now(self);
  for (auto i = st.waiting.begin(); i != st.waiting.end();) {
    if (i->deadline <= t) {
      i->promise.deliver(received_batch{});
      i = st.waiting.erase(i);
    } else {
      ++i;
    }
  }
  arm_wake_up(self);
}

caf::result<received_batch> receive(queue_pointer self,
                                    const receive_request& req) {
  auto& st = self->state;
  auto max = std::clamp(req.max_messages, int32_t{1}, max_batch);
  auto visibility = req.visibility > caf::timespan{0} ? req.visibility
                                                      : st.cfg.visibility_timeout;
  auto batch = take_visible(self, max, visibility);
  if (!batch.messages.empty() || req.wait <= caf::timespan{0})
    return batch;
  auto promise = self->make_response_promise<received_batch>();
  st.waiting.push_back({max, visibility, now(self) + req.wait, promise});
  arm_wake_up(self);
  return promise;
}

batch_result remove(queue_pointer self, const std::vector<std::string>& receipts) {
  auto& st = self->state;
  batch_result out;
  for (auto& receipt : receipts) {
    auto i = st.receipts.find(receipt);
    if (i == st.receipts.end()) {
      out.failed.push_back(receipt_error(receipt));
      continue;
    }
    auto seq = i->second;
    st.by_visible_at.erase({st.messages.at(seq).visible_at, seq});
    st.messages.erase(seq);
    st.receipts.erase(i);
    st.stats->add("ghscale_queue_deleted_total", queue_label(self));
    out.succeeded.push_back(receipt);
  }
  return out;
}

batch_result change_visibility(queue_pointer self,
                               const std::vector<visibility_change>& changes) {
  auto& st = self->state;
  batch_result out;
  for (auto& change : changes) {
    auto i = st.receipts.find(change.receipt);
    if (i == st.receipts.end()) {
      out.failed.push_back(receipt_error(change.receipt));
      continue;
    }
    auto seq = i->second;
    reschedule(self, seq, st.messages.at(seq), now(self) + change.delay);
    out.succeeded.push_back(change.receipt);
  }
  serve_waiting(self);
  return out;
}

batch_result enqueue(queue_pointer self,
                     const std::vector<outgoing_message>& entries) {
  auto& st = self->state;
  auto t = now(self);
  batch_result out;
  for (size_t index = 0; index < entries.size(); ++index) {
    auto seq = st.next_message++;
    stored_message msg;
    msg.id = "m-" + std::to_string(seq);
    msg.body = entries[index].body;
    msg.sent_at = t;
    msg.visible_at = t + std::max(entries[index].delay, caf::timespan{0});
    st.by_visible_at.emplace(msg.visible_at, seq);
    st.messages.emplace(seq, std::move(msg));
    st.stats->add("ghscale_queue_sent_total", queue_label(self));
    out.succeeded.push_back(std::to_string(index));
  }
  serve_waiting(self);
  return out;
}

queue_depth depth(queue_pointer self) {
  auto t = now(self);
  queue_depth out;
  for (auto& [seq, msg] : self->state.messages) {
    if (msg.redriving)
      continue;
    if (msg.visible_at <= t)
      ++out.visible;
    else if (msg.receive_count > 0)
      ++out.in_flight;
    else
      ++out.delayed;
  }
  return out;
}

} // namespace

embedded_queue_actor::behavior_type
embedded_queue(embedded_queue_actor::stateful_pointer<embedded_queue_state> self,
               queue_config cfg, queue_actor dead_letter, metrics_ptr stats) {
  self->state.cfg = std::move(cfg);
  self->state.dead_letter = std::move(dead_letter);
  self->state.stats = std::move(stats);
  return {
    [=](atom::receive, const receive_request& req) {
      return receive(self, req);
    },
    [=](atom::remove, const std::vector<std::string>& receipts) {
      return remove(self, receipts);
    },
    [=](atom::visibility, const std::vector<visibility_change>& changes) {
      return change_visibility(self, changes);
    },
    [=](atom::enqueue, const std::vector<outgoing_message>& entries) {
      return enqueue(self, entries);
    },
    [=](atom::depth) { return depth(self); },
    [=](atom::poll) {
      auto& wake_ups = self->state.wake_ups;
      wake_ups.erase(wake_ups.begin(), wake_ups.upper_bound(now(self)));
      serve_waiting(self);
    },
  };
}

} // namespace ghscale
