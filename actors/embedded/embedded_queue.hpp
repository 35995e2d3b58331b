#pragma once
// In-process queue with SQS semantics: visibility timeout, receive count,
// redrive to a dead-letter queue after `max_receive_count` receives, long
// poll (a receive waits until a message is visible or `wait` has passed),
// delayed messages, per-entry batch results. Deterministic: time comes from
// the actor clock, receipts and ids from counters.
//
// A durable queue (`queue_config::storage` names a SQLite file) writes every
// change to its queue_store before it answers: an acknowledged send, receive,
// delete or visibility change survives a crash. After a restart, messages
// that were in flight become visible at their stored visibility deadline,
// with their receive counts, as SQS would redeliver them. Redrive writes to
// the dead-letter queue first and deletes here second: a crash in between
// leaves the message in both queues, so it is dead-lettered again and the
// dead-letter queue holds a duplicate; it is never lost.
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "actors/ops/metrics.hpp"
#include "transport/queue_store.hpp"
#include "transport/wall_clock.hpp"

#include <caf/all.hpp>

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace ghscale {

struct embedded_queue_state {
  /// One message on the queue, delivered or not.
  struct stored_message {
    std::string id;
    std::string body;
    message_attributes attributes;
    caf::timespan sent_at{0};
    int32_t receive_count = 0;
    caf::timespan visible_at{0}; // on the actor clock
    std::string receipt;         // of the latest delivery; "" before the first
    bool redriving = false;      // on its way to the dead-letter queue
  };

  /// A long-poll receive that found nothing visible and waits.
  struct held_receive {
    int32_t max_messages = 1;
    caf::timespan visibility{0};
    caf::timespan deadline{0};
    caf::typed_response_promise<received_batch> promise;
  };

  queue_config cfg;
  queue_actor dead_letter; // invalid: no redrive
  metrics_ptr stats;
  uint64_t next_message = 1;
  uint64_t next_receipt = 1;
  /// By sequence number, which is also the tie-breaker of the delivery order.
  std::map<uint64_t, stored_message> messages;
  /// (visible_at, sequence) of every message not being redriven: the
  /// delivery order, and where the next message becomes visible.
  std::set<std::pair<caf::timespan, uint64_t>> by_visible_at;
  /// Only the latest receipt of each message is valid.
  std::unordered_map<std::string, uint64_t> receipts;
  /// Long polls, served first come, first served.
  std::deque<held_receive> waiting;
  /// A durable queue's send waiting for the next commit.
  struct pending_send {
    std::vector<outgoing_message> entries;
    caf::typed_response_promise<batch_result> promise;
  };
  /// Durable queues: the sends the next commit takes (one disk flush for
  /// every send that arrived while the previous commit was on disk).
  std::vector<pending_send> pending_sends;
  /// When the wake-ups already scheduled fire.
  std::set<caf::timespan> wake_ups;
  /// Durable queues: where every change is committed before it is
  /// acknowledged; null keeps the queue in memory.
  std::shared_ptr<queue_store> store;
  /// Durable queues: converts the store's Unix times to the actor clock.
  clock_bridge wall;
  /// Receipts are this prefix and a counter. A durable queue's prefix names
  /// its incarnation, so a receipt never repeats across restarts.
  std::string receipt_prefix = "r-";

  static inline const char* name = "embedded_queue";
};

/// What a durable queue starts from: its opened store, the messages the
/// store held, and the bridge between the store's Unix times and the actor
/// clock (wall time and actor time read at the same moment).
struct queue_recovery {
  std::shared_ptr<queue_store> store;
  std::vector<queue_record> records;
  clock_bridge wall;
};

/// Returns the handle as an `embedded_queue_actor`, which converts to the
/// `queue_actor` its clients take; the extra handler is its own timer.
/// Keeps the queue in memory whatever `cfg.storage` says:
/// spawn_embedded_queue honours it.
embedded_queue_actor::behavior_type
embedded_queue(embedded_queue_actor::stateful_pointer<embedded_queue_state> self,
               queue_config cfg, queue_actor dead_letter, metrics_ptr stats);

/// The durable queue, starting from what `recovered` holds.
embedded_queue_actor::behavior_type durable_embedded_queue(
  embedded_queue_actor::stateful_pointer<embedded_queue_state> self,
  queue_config cfg, queue_actor dead_letter, metrics_ptr stats,
  queue_recovery recovered);

/// Opens `cfg.storage` and reads the queue's messages from it.
caf::expected<queue_recovery> recover_queue(const queue_config& cfg,
                                            clock_bridge wall,
                                            store_sync sync = store_sync::full);

/// Spawns the queue `cfg` describes: in memory, or durable on
/// `cfg.storage`, which is opened and read first, so a store that cannot be
/// used is an error here (naming the file and SQLite's reason), at startup.
caf::expected<embedded_queue_actor>
spawn_embedded_queue(caf::actor_system& sys, const queue_config& cfg,
                     queue_actor dead_letter, metrics_ptr stats);

/// As above, with the clock bridge given (tests and simulations pass one
/// that follows their virtual clock).
caf::expected<embedded_queue_actor>
spawn_embedded_queue(caf::actor_system& sys, const queue_config& cfg,
                     queue_actor dead_letter, metrics_ptr stats, clock_bridge wall);

} // namespace ghscale
