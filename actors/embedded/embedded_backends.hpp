#pragma once
// The in-process backends behind a configuration's `backend = "embedded"`
// entries: embedded queues (dead-letter queues first), simulated EC2 + SSM
// and simulated GitHub, wired to each other the way the real services are.
#include "actors/embedded/sim_cloud.hpp"
#include "actors/embedded/sim_github.hpp"
#include "actors/node.hpp"
#include "actors/ops/metrics.hpp"
#include "messages/config.hpp"

#include <caf/all.hpp>

namespace ghscale {

/// The in-process world: embedded queues, simulated EC2+SSM and GitHub.
struct embedded_world {
  backends wiring;
  sim_cloud_actor cloud;
  sim_github_actor github;
};

/// Spawns the embedded queues and simulated backends a config asks for.
caf::expected<embedded_world>
spawn_embedded_backends(caf::actor_system& sys, const config& cfg,
                        metrics_ptr stats);

} // namespace ghscale
