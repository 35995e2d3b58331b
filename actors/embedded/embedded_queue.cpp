#include "actors/embedded/embedded_queue.hpp"

#include "actors/clock.hpp"
#include "actors/ops/log.hpp"

#include <algorithm>
#include <chrono>
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

/// An actor-clock time as the store keeps it, rounded up to the
/// millisecond so that a message never becomes visible early after a restart.
int64_t to_unix_ms(const clock_bridge& wall, caf::timespan actor_time) {
  return std::chrono::ceil<std::chrono::milliseconds>(wall.to_wall(actor_time)).count();
}

caf::timespan from_unix_ms(const clock_bridge& wall, int64_t unix_ms) {
  return wall.to_actor(std::chrono::milliseconds{unix_ms});
}

/// Logs and counts a write the store refused; the caller answers with it.
caf::error store_failed(queue_pointer self, const char* operation, caf::error err) {
  log::error("queue store failed", {{"queue", self->state.cfg.name},
                                    {"operation", operation},
                                    {"reason", describe(err)}});
  self->state.stats->add("ghscale_queue_store_errors_total", queue_label(self));
  return err;
}

delivery_record delivery_row(queue_pointer self, uint64_t seq,
                             caf::timespan visible_at, int32_t receive_count,
                             const std::string& receipt) {
  return {static_cast<int64_t>(seq), to_unix_ms(self->state.wall, visible_at),
          receive_count, receipt};
}

/// Takes a message out of every index.
void forget(queue_pointer self, uint64_t seq) {
  auto& st = self->state;
  auto i = st.messages.find(seq);
  st.by_visible_at.erase({i->second.visible_at, seq});
  st.receipts.erase(i->second.receipt);
  st.messages.erase(i);
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
  std::vector<outgoing_message> moved{dead_letter_for(
    queue_message{msg.id, msg.receipt, msg.body, msg.receive_count, msg.sent_at,
                  msg.attributes},
    st.cfg.name,
    "received " + std::to_string(msg.receive_count) + " times (max_receive_count "
      + std::to_string(st.cfg.max_receive_count) + ")")};
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
        // The dead-letter queue has committed it; a failure here leaves a
        // copy that is dead-lettered again after a restart.
        if (st.store)
          if (auto err = st.store->remove({static_cast<int64_t>(seq)}))
            store_failed(self, "delete redriven", std::move(err));
        forget(self, seq);
        st.stats->add("ghscale_queue_redriven_total", queue_label(self));
      },
      [=](const caf::error& err) {
        abort_redrive(self, seq, self->system().render(err));
      });
}

/// One delivery: a fresh receipt (the older one becomes invalid) and
/// invisibility until `visible_at`.
queue_message deliver(queue_pointer self, uint64_t seq, std::string receipt,
                      caf::timespan visible_at) {
  auto& st = self->state;
  auto& msg = st.messages.at(seq);
  ++msg.receive_count;
  st.receipts.erase(msg.receipt);
  msg.receipt = std::move(receipt);
  st.receipts.emplace(msg.receipt, seq);
  reschedule(self, seq, msg, visible_at);
  st.stats->add("ghscale_queue_received_total", queue_label(self));
  return {msg.id, msg.receipt, msg.body, msg.receive_count, msg.sent_at, msg.attributes};
}

/// Up to `max` visible messages in delivery order, redriving on the way
/// those that were received `max_receive_count` times already.
std::vector<uint64_t> pick_visible(queue_pointer self, int32_t max) {
  auto& st = self->state;
  auto t = now(self);
  std::vector<uint64_t> picked;
  auto i = st.by_visible_at.begin();
  while (static_cast<int32_t>(picked.size()) < max && i != st.by_visible_at.end()
         && i->first <= t) {
    auto seq = (i++)->second; // redrive erases this entry, not the next
    if (st.dead_letter && st.messages.at(seq).receive_count >= st.cfg.max_receive_count)
      redrive(self, seq);
    else
      picked.push_back(seq);
  }
  return picked;
}

/// Delivers up to `max` visible messages; a durable queue commits their new
/// receipts, receive counts and visibility first.
caf::expected<received_batch> take_visible(queue_pointer self, int32_t max,
                                           caf::timespan visibility) {
  auto& st = self->state;
  auto picked = pick_visible(self, max);
  auto visible_at = now(self) + visibility;
  std::vector<std::string> receipts;
  for (size_t n = 0; n < picked.size(); ++n)
    receipts.push_back(st.receipt_prefix + std::to_string(st.next_receipt++));
  if (st.store) {
    std::vector<delivery_record> rows;
    for (size_t n = 0; n < picked.size(); ++n)
      rows.push_back(delivery_row(self, picked[n], visible_at,
                                  st.messages.at(picked[n]).receive_count + 1,
                                  receipts[n]));
    if (auto err = st.store->update(rows))
      return store_failed(self, "receive", std::move(err));
  }
  received_batch batch;
  for (size_t n = 0; n < picked.size(); ++n)
    batch.messages.push_back(deliver(self, picked[n], std::move(receipts[n]),
                                     visible_at));
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
    if (batch && batch->messages.empty())
      continue; // everything visible went to the dead-letter queue
    if (batch)
      first.promise.deliver(std::move(*batch));
    else
      first.promise.deliver(std::move(batch.error()));
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
  if (!batch)
    return std::move(batch.error());
  if (!batch->messages.empty() || req.wait <= caf::timespan{0})
    return std::move(*batch);
  auto promise = self->make_response_promise<received_batch>();
  st.waiting.push_back({max, visibility, now(self) + req.wait, promise});
  arm_wake_up(self);
  return promise;
}

/// The messages `receipts` name, in order; an unknown receipt, or one named
/// twice, fails its entry.
std::vector<uint64_t> resolve(queue_pointer self,
                              const std::vector<std::string>& receipts,
                              batch_result& out) {
  std::vector<uint64_t> seqs;
  for (auto& receipt : receipts) {
    auto i = self->state.receipts.find(receipt);
    // Batches hold at most ten entries: a linear search is cheapest.
    if (i == self->state.receipts.end()
        || std::find(seqs.begin(), seqs.end(), i->second) != seqs.end()) {
      out.failed.push_back(receipt_error(receipt));
      continue;
    }
    seqs.push_back(i->second);
    out.succeeded.push_back(receipt);
  }
  return seqs;
}

caf::result<batch_result> remove(queue_pointer self,
                                 const std::vector<std::string>& receipts) {
  auto& st = self->state;
  batch_result out;
  auto seqs = resolve(self, receipts, out);
  if (st.store) {
    std::vector<int64_t> ids(seqs.begin(), seqs.end());
    if (auto err = st.store->remove(ids))
      return store_failed(self, "delete", std::move(err));
  }
  for (auto seq : seqs) {
    forget(self, seq);
    st.stats->add("ghscale_queue_deleted_total", queue_label(self));
  }
  return out;
}

caf::result<batch_result>
change_visibility(queue_pointer self, const std::vector<visibility_change>& changes) {
  auto& st = self->state;
  // One ChangeMessageVisibilityBatch per ten entries, as SQS would bill it.
  st.stats->add("ghscale_queue_visibility_calls_total", queue_label(self),
                static_cast<int64_t>((changes.size() + 9) / 10));
  batch_result out;
  std::vector<uint64_t> seqs;
  std::vector<caf::timespan> visible_at;
  for (auto& change : changes) {
    auto i = st.receipts.find(change.receipt);
    if (i == st.receipts.end()) {
      out.failed.push_back(receipt_error(change.receipt));
      continue;
    }
    seqs.push_back(i->second);
    visible_at.push_back(now(self) + change.delay);
    out.succeeded.push_back(change.receipt);
  }
  if (st.store) {
    std::vector<delivery_record> rows;
    for (size_t n = 0; n < seqs.size(); ++n) {
      auto& msg = st.messages.at(seqs[n]);
      rows.push_back(
        delivery_row(self, seqs[n], visible_at[n], msg.receive_count, msg.receipt));
    }
    if (auto err = st.store->update(rows))
      return store_failed(self, "change visibility", std::move(err));
  }
  for (size_t n = 0; n < seqs.size(); ++n)
    reschedule(self, seqs[n], st.messages.at(seqs[n]), visible_at[n]);
  serve_waiting(self);
  return out;
}

caf::timespan visible_after(caf::timespan sent_at, const outgoing_message& entry) {
  return sent_at + std::max(entry.delay, caf::timespan{0});
}

/// Sequence numbers for new messages. A durable queue's come from its
/// store, which has committed the messages when this returns.
caf::expected<std::vector<uint64_t>>
admit(queue_pointer self, const std::vector<outgoing_message>& entries,
      caf::timespan sent_at) {
  auto& st = self->state;
  std::vector<uint64_t> seqs;
  if (!st.store) {
    for (size_t n = 0; n < entries.size(); ++n)
      seqs.push_back(st.next_message++);
    return seqs;
  }
  std::vector<new_record> records;
  records.reserve(entries.size());
  for (auto& entry : entries)
    records.push_back({entry.body, to_unix_ms(st.wall, sent_at),
                       to_unix_ms(st.wall, visible_after(sent_at, entry)),
                       &entry.attributes});
  auto ids = st.store->insert(records);
  if (!ids)
    return store_failed(self, "send", std::move(ids.error()));
  seqs.assign(ids->begin(), ids->end());
  return seqs;
}

/// Puts a message into every index.
void admit_message(queue_pointer self, uint64_t seq, stored_message msg) {
  auto& st = self->state;
  st.by_visible_at.emplace(msg.visible_at, seq);
  if (!msg.receipt.empty())
    st.receipts.emplace(msg.receipt, seq);
  st.messages.emplace(seq, std::move(msg));
}

caf::expected<batch_result> enqueue(queue_pointer self,
                                    const std::vector<outgoing_message>& entries) {
  auto& st = self->state;
  auto t = now(self);
  auto seqs = admit(self, entries, t);
  if (!seqs)
    return std::move(seqs.error());
  batch_result out;
  for (size_t index = 0; index < entries.size(); ++index) {
    auto seq = (*seqs)[index];
    stored_message msg;
    msg.id = "m-" + std::to_string(seq);
    msg.body = entries[index].body;
    msg.attributes = entries[index].attributes;
    msg.sent_at = t;
    msg.visible_at = visible_after(t, entries[index]);
    admit_message(self, seq, std::move(msg));
    st.stats->add("ghscale_queue_sent_total", queue_label(self));
    out.succeeded.push_back(std::to_string(index));
  }
  serve_waiting(self);
  return out;
}

/// A durable queue's send is committed together with every other send that
/// arrives before the commit runs: the commit is a message to itself, behind
/// the sends already in the mailbox.
caf::result<batch_result> defer_send(queue_pointer self,
                                     std::vector<outgoing_message> entries) {
  auto& st = self->state;
  if (st.pending_sends.empty())
    self->send(self, atom::flush_v);
  auto promise = self->make_response_promise<batch_result>();
  st.pending_sends.push_back({std::move(entries), promise});
  return promise;
}

/// Commits the pending sends in one transaction and answers each with its
/// own entries' indexes; if the commit fails, every one of them fails.
void commit_sends(queue_pointer self) {
  auto pending = std::move(self->state.pending_sends);
  self->state.pending_sends.clear();
  std::vector<outgoing_message> all;
  for (auto& send : pending)
    all.insert(all.end(), std::make_move_iterator(send.entries.begin()),
               std::make_move_iterator(send.entries.end()));
  auto committed = enqueue(self, all);
  for (auto& send : pending) {
    if (!committed) {
      send.promise.deliver(committed.error());
      continue;
    }
    batch_result own;
    for (size_t index = 0; index < send.entries.size(); ++index)
      own.succeeded.push_back(std::to_string(index));
    send.promise.deliver(std::move(own));
  }
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

/// Rebuilds the queue from what its store held: messages in flight at the
/// crash stay invisible until their stored deadline, their receipts valid.
void restore(queue_pointer self, std::vector<queue_record> records) {
  auto& st = self->state;
  auto t = now(self);
  int64_t in_flight = 0;
  for (auto& record : records) {
    stored_message msg;
    msg.id = "m-" + std::to_string(record.id);
    msg.body = std::move(record.body);
    msg.attributes = std::move(record.attributes);
    msg.sent_at = from_unix_ms(st.wall, record.sent_at);
    msg.receive_count = record.receive_count;
    msg.visible_at = from_unix_ms(st.wall, record.visible_at);
    msg.receipt = std::move(record.receipt);
    in_flight += msg.receive_count > 0 && msg.visible_at > t ? 1 : 0;
    admit_message(self, static_cast<uint64_t>(record.id), std::move(msg));
  }
  log::info("queue recovered", {{"queue", st.cfg.name},
                                {"storage", st.cfg.storage},
                                {"incarnation", st.store->incarnation()},
                                {"messages", static_cast<int64_t>(records.size())},
                                {"in_flight", in_flight}});
}

void init(queue_pointer self, queue_config cfg, queue_actor dead_letter,
          metrics_ptr stats) {
  self->state.cfg = std::move(cfg);
  self->state.dead_letter = std::move(dead_letter);
  self->state.stats = std::move(stats);
}

embedded_queue_actor::behavior_type queue_behavior(queue_pointer self) {
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
    [=](atom::enqueue, std::vector<outgoing_message>& entries) -> caf::result<batch_result> {
      if (self->state.store)
        return defer_send(self, std::move(entries));
      return enqueue(self, entries);
    },
    [=](atom::flush) { commit_sends(self); },
    [=](atom::depth) { return depth(self); },
    [=](atom::poll) {
      auto& wake_ups = self->state.wake_ups;
      wake_ups.erase(wake_ups.begin(), wake_ups.upper_bound(now(self)));
      serve_waiting(self);
    },
  };
}

} // namespace

embedded_queue_actor::behavior_type
embedded_queue(embedded_queue_actor::stateful_pointer<embedded_queue_state> self,
               queue_config cfg, queue_actor dead_letter, metrics_ptr stats) {
  init(self, std::move(cfg), std::move(dead_letter), std::move(stats));
  return queue_behavior(self);
}

embedded_queue_actor::behavior_type durable_embedded_queue(
  embedded_queue_actor::stateful_pointer<embedded_queue_state> self,
  queue_config cfg, queue_actor dead_letter, metrics_ptr stats,
  queue_recovery recovered) {
  init(self, std::move(cfg), std::move(dead_letter), std::move(stats));
  auto& st = self->state;
  st.store = std::move(recovered.store);
  st.wall = recovered.wall;
  st.receipt_prefix = "r-" + std::to_string(st.store->incarnation()) + "-";
  restore(self, std::move(recovered.records));
  return queue_behavior(self);
}

caf::expected<queue_recovery> recover_queue(const queue_config& cfg,
                                            clock_bridge wall, store_sync sync) {
  auto store = queue_store::open(cfg.storage, cfg.name, sync);
  if (!store)
    return std::move(store.error());
  auto records = store->load();
  if (!records)
    return std::move(records.error());
  return queue_recovery{std::make_shared<queue_store>(std::move(*store)),
                        std::move(*records), wall};
}

caf::expected<embedded_queue_actor>
spawn_embedded_queue(caf::actor_system& sys, const queue_config& cfg,
                     queue_actor dead_letter, metrics_ptr stats) {
  clock_bridge wall{wall_now(), sys.clock().now().time_since_epoch()};
  return spawn_embedded_queue(sys, cfg, std::move(dead_letter), std::move(stats),
                              wall);
}

caf::expected<embedded_queue_actor>
spawn_embedded_queue(caf::actor_system& sys, const queue_config& cfg,
                     queue_actor dead_letter, metrics_ptr stats, clock_bridge wall) {
  if (cfg.storage.empty())
    return sys.spawn(embedded_queue, cfg, std::move(dead_letter), std::move(stats));
  auto recovered = recover_queue(cfg, wall);
  if (!recovered)
    return std::move(recovered.error());
  return sys.spawn(durable_embedded_queue, cfg, std::move(dead_letter),
                   std::move(stats), std::move(*recovered));
}

} // namespace ghscale
