#pragma once
// The node: spawns the ghscale supervision tree into an actor system from a
// configuration value, in dependency order (ledgers, GitHub Apps, launcher,
// scalers, pollers), and drains it in reverse on request.
//
// Embedding: another CAF application calls `spawn_node` with its own
// `actor_system` (whose config ran `ghscale::register_types`) and keeps the
// returned handles. Every handle is stable across restarts of its actor.
#include "actors/github_app.hpp"
#include "actors/ops/metrics.hpp"
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "transport/wall_clock.hpp"

#include <caf/all.hpp>

#include <map>
#include <string>
#include <vector>

namespace ghscale {

/// What the node talks to: real clients (actors/clients/remote_backends) or
/// the in-process backends (actors/embedded/embedded_backends).
struct backends {
  /// Relates the actor clock to Unix time (the reaper's idle schedule):
  /// the system clock for real backends, a fixed origin in simulations.
  clock_bridge wall;
  std::map<std::string, queue_actor> queues; // by queue name, DLQs included
  ec2_actor ec2;
  ssm_actor ssm;
  std::map<std::string, github_api_actor> github; // by App name
  std::map<std::string, jwt_minter> jwt;          // by App name
};

struct node_handles {
  node_actor node; // drain, status; exits when the tree gives up
  std::map<std::string, scaler_actor> scalers;        // by pool
  std::map<std::string, runner_ledger_actor> ledgers; // by pool
  std::map<std::string, reaper_actor> reapers;        // by pool
  fleet_launcher_actor launcher;
  std::map<std::string, github_app_actor> apps; // by App name
  job_retry_actor job_retry;
  poll_loops_actor loops;           // the poll loops (poller supervisor)
  token_registry_actor registry;    // their leases
};

/// Spawns the supervision tree. Fails (errc::invalid_config) if the config
/// names a backend that `b` does not provide. `seed` seeds every random
/// delay (jitter, backoff): `ghscale run` takes it from the process, so
/// that processes on one queue never retry in lockstep; simulations and
/// tests pass `simulation.seed`.
caf::expected<node_handles> spawn_node(caf::actor_system& sys,
                                       const config& cfg, const backends& b,
                                       metrics_ptr stats, uint64_t seed);

} // namespace ghscale
