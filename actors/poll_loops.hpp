#pragma once
// The poller supervisor: starts a poll loop for each lease the token registry
// hands it, drains them all on shutdown, and kills one on request (chaos).
// Loops are monitored, not linked: a crashed loop never takes the others
// down, and the registry (which monitors them too) starts its replacement.
// No loop outlives this actor.
#include "actors/ops/metrics.hpp"
#include "actors/poller.hpp"
#include "messages/actors.hpp"

#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <caf/all.hpp>

namespace ghscale {

/// A running loop and the loop id of the lease it holds (for the logs).
struct running_loop {
  poller_actor handle;
  uint64_t loop_id = 0;
};

/// The running loops, by queue; shared with the exit hook that kills them.
using loops_by_queue = std::map<std::string, std::vector<running_loop>>;

struct poll_loops_state {
  std::shared_ptr<loops_by_queue> running = std::make_shared<loops_by_queue>();
  /// Loops spawned so far: each gets seed + this count, deterministically.
  uint64_t spawned = 0;
  bool draining = false; // drain asked: start no more loops
  std::mt19937_64 rng;
  static inline const char* name = "poll_loops";
};

poll_loops_actor::behavior_type
poll_loops(poll_loops_actor::stateful_pointer<poll_loops_state> self,
           std::map<std::string, poller_setup> setups, lease_keeper_actor registry,
           metrics_ptr stats, uint64_t seed);

} // namespace ghscale
