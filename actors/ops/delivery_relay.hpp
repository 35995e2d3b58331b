#pragma once
// Carries accepted webhook deliveries from the HTTP server's threads into the
// webhook queue and reports each outcome through the delivery's callback.
// One actor for all deliveries: the server's threads never block on the
// queue, and a delivery costs no actor of its own.
#include "messages/actors.hpp"

#include <caf/all.hpp>

namespace ghscale {

struct delivery_relay_state {
  queue_actor queue;
  caf::timespan enqueue_timeout{};
  static inline const char* name = "delivery_relay";
};

delivery_relay_actor::behavior_type
delivery_relay(delivery_relay_actor::stateful_pointer<delivery_relay_state> self,
               queue_actor queue, caf::timespan enqueue_timeout);

} // namespace ghscale
