#pragma once
// One long-poll loop on one queue: receives a batch, parses and routes each
// message, asks each pool's scaler for outcomes, then applies them per
// message (delete, change visibility, dead-letter). Nothing is deleted
// without an outcome that says so. The loop holds a lease from the token
// registry and heartbeats it on its own timer; a `stop` verdict (revoked
// token, or a replacement took its loop id) ends it like a drain.
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "actors/metrics.hpp"
#include <map>
#include <random>
#include <vector>

#include <caf/all.hpp>

namespace ghscale {

struct poller_state {
  bool receiving = false;  // a receive call is in flight
  bool processing = false; // a batch is being decided or its outcomes applied
  bool draining = false;   // drain asked or told to stop: receive no more
  /// Drain requests, answered once the loop has stopped.
  std::vector<caf::typed_response_promise<bool>> drain_waiters;
  /// Consecutive failed receives, for the backoff before the next one.
  int32_t receive_failures = 0;
  std::mt19937_64 rng;
  static inline const char* name = "poller";
};

/// Where the poller sends what it receives, by pool name.
struct poller_routes {
  std::vector<pool_config> pools;
  std::map<std::string, scaler_actor> scalers;
  std::map<std::string, lifecycle_sink_actor> ledgers;
};

/// Everything a loop of one queue needs, shared by all its loops.
struct poller_setup {
  queue_config queue;
  queue_actor source;
  queue_actor dead_letter; // may be null: poison is parked instead
  poller_routes routes;
  retry_config retry;
  timeouts_config timeouts;
  poll_loops_config loops;
};

poller_actor::behavior_type
poller(poller_actor::stateful_pointer<poller_state> self, poller_setup setup,
       lease held, lease_keeper_actor registry, metrics_ptr stats,
       uint64_t seed);

} // namespace ghscale
