#pragma once
// In-process queue with SQS semantics: visibility timeout, receive count,
// redrive to a dead-letter queue after `max_receive_count` receives, long
// poll (a receive waits until a message is visible or `wait` has passed),
// delayed messages, per-entry batch results. Deterministic: time comes from
// the actor clock, receipts and ids from counters.
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "actors/metrics.hpp"

#include <caf/all.hpp>

#include <cstdint>
#include <deque>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>

namespace ghscale {

struct embedded_queue_state {
  /// One message on the queue, delivered or not.
  struct stored_message {
    std::string id;
    std::string body;
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
  /// When the wake-ups already scheduled fire.
  std::set<caf::timespan> wake_ups;

  static inline const char* name = "embedded_queue";
};

/// Returns the handle as an `embedded_queue_actor`, which converts to the
/// `queue_actor` its clients take; the extra handler is its own timer.
embedded_queue_actor::behavior_type
embedded_queue(embedded_queue_actor::stateful_pointer<embedded_queue_state> self,
               queue_config cfg, queue_actor dead_letter, metrics_ptr stats);

} // namespace ghscale
