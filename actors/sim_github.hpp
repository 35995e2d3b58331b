#pragma once
// Simulated GitHub, seeded and deterministic: installations and tokens
// (expiry), JIT configs and registration tokens, runners, job status, the
// primary rate limit per installation and a secondary write limit (403 with
// retry-after), injected 5xx and 404 faults. Jobs queued on it are taken by
// idle online runners with matching labels; it delivers the webhooks
// (queued, in_progress, completed) to the connected queue.
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "actors/metrics.hpp"

#include <caf/all.hpp>

namespace ghscale {

struct sim_github_state {
  static inline const char* name = "sim_github";
};

sim_github_actor::behavior_type
sim_github(sim_github_actor::stateful_pointer<sim_github_state> self,
           simulation_config cfg, metrics_ptr stats);

} // namespace ghscale
