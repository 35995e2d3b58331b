#pragma once
// Leases of poll loops, one per loop, for every polled queue of the cluster.
// Each lease has a token (revoked on scale-down), a loop id (replaced when
// the loop goes quiet, which fences out the old loop if it was only slow)
// and the time of its last heartbeat. The registry keeps each queue between
// its min and max loops, follows the queue's depth with hysteresis (as
// CloudWatch alarms going ALARM, then OK), and replaces dead or silent loops.
#include "actors/ops/metrics.hpp"
#include "messages/actors.hpp"
#include "messages/config.hpp"

#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include <caf/all.hpp>

namespace ghscale {

/// One lease as the registry keeps it.
struct lease_record {
  lease held;       // queue, token and the current loop id
  poller_actor loop; // the current loop, once its start was answered
  /// Last sign of life: the last heartbeat, or the start of the current loop.
  caf::actor_clock::time_point last_seen;
  bool start_failed = false; // the start is retried at the next tick
  /// When the loop this lease replaced was last known alive; its revival
  /// time is taken once the replacement has started.
  std::optional<caf::actor_clock::time_point> replaced_since;
};

/// One polled queue: bounds, thresholds, depth sampler, what happened.
struct queue_leases {
  queue_config config;
  queue_depth_actor depth; // null: the queue is not sampled
  queue_loops view;        // alarm, last depth and counters
  /// The alarm went back to OK: one loop fewer per sample, down to the
  /// minimum; then scale-down waits for the next alarm.
  bool scale_down_armed = false;
  bool sampling = false; // a depth request is in flight
};

struct token_registry_state {
  std::map<std::string, queue_leases> queues; // by queue name
  std::map<std::string, lease_record> leases; // by token
  uint64_t last_loop_id = 0;
  caf::actor_clock::time_point next_sample;
  bool draining = false; // no more starts, revivals or scaling
  std::mt19937_64 rng;
  static inline const char* name = "token_registry";
};

token_registry_actor::behavior_type
token_registry(token_registry_actor::stateful_pointer<token_registry_state> self,
               std::vector<queue_config> queues,
               std::map<std::string, queue_depth_actor> depths,
               poll_loops_actor loops, poll_loops_config cfg,
               timeouts_config timeouts, metrics_ptr stats, uint64_t seed);

} // namespace ghscale
