#pragma once
// One long-poll loop on one queue: receives a batch, parses and routes each
// message, asks each pool's scaler for outcomes, then applies them per
// message (delete, change visibility, dead-letter). Nothing is deleted
// without an outcome that says so.
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
  bool draining = false;   // drain asked: receive no more
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

poller_actor::behavior_type
poller(poller_actor::stateful_pointer<poller_state> self, queue_config queue,
       queue_actor source, queue_actor dead_letter, poller_routes routes,
       retry_config retry, timeouts_config timeouts, metrics_ptr stats,
       uint64_t seed);

} // namespace ghscale
