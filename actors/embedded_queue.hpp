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

namespace ghscale {

struct embedded_queue_state {
  static inline const char* name = "embedded_queue";
};

queue_actor::behavior_type
embedded_queue(queue_actor::stateful_pointer<embedded_queue_state> self,
               queue_config cfg, queue_actor dead_letter, metrics_ptr stats);

} // namespace ghscale
