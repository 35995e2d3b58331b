#pragma once
// The real services behind a configuration's `backend = "remote"` entries:
// one HTTP engine, one AWS credential chain, an SQS client per remote queue,
// EC2 and SSM clients, and per remote GitHub App a REST client and an RS256
// JWT minter. They run under their own supervisor, started before the node's
// tree and stopped after it.
#include "actors/ops/metrics.hpp"
#include "actors/node.hpp"
#include "messages/config.hpp"

#include <caf/all.hpp>

namespace ghscale {

struct remote_world {
  backends wiring; // only the remote entries; merge with embedded ones
  caf::actor tree; // the "backends" supervisor (invalid if nothing is remote)
  aws_credentials_actor credentials; // invalid if nothing on AWS is remote
};

/// Spawns the remote clients `cfg` asks for and loads each remote App's
/// private key (from its file, or from SSM), so that a missing credential is
/// reported at startup with what and where, never later per request.
/// `seed` seeds their retry jitter (from the process: see spawn_node).
caf::expected<remote_world> spawn_remote_backends(caf::actor_system& sys,
                                                  const config& cfg,
                                                  metrics_ptr stats,
                                                  uint64_t seed);

/// `extra`'s entries added to `into` (remote clients next to embedded ones).
void merge_backends(backends& into, const backends& extra);

} // namespace ghscale
