#pragma once
// Simulated EC2 + SSM, seeded and deterministic: CreateFleet (instant) with
// a token bucket (throttling), capacity errors per instance type, partial
// fills, ClientToken idempotency; instances boot after `boot_delay`, read
// their SSM parameter and bring their runner online in sim GitHub.
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "actors/metrics.hpp"

#include <caf/all.hpp>

namespace ghscale {

struct sim_cloud_state {
  static inline const char* name = "sim_cloud";
};

sim_cloud_actor::behavior_type
sim_cloud(sim_cloud_actor::stateful_pointer<sim_cloud_state> self,
          simulation_config cfg, std::string parameter_prefix,
          sim_github_actor github, metrics_ptr stats);

} // namespace ghscale
