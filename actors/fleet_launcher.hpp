#pragma once
// Turns a launch request into one CreateFleet (instant, idempotent
// ClientToken), fails spot shortfalls over to on-demand for listed error
// codes, registers a runner per instance through its installation client and
// hands the config over via SSM. A failed registration terminates that
// instance. Throttled EC2 calls are retried with jittered backoff and the
// same ClientToken.
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "actors/ops/metrics.hpp"
#include <map>

#include <caf/all.hpp>

#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace ghscale {

/// One launch request on its way through CreateFleet, registration and the
/// SSM hand-off.
struct launch_attempt {
  launch_request request;
  const pool_config* pool = nullptr; // into fleet_launcher_state::pools
  caf::typed_response_promise<launch_result> promise;
  caf::timespan deadline{0}; // throttled CreateFleet calls retry until then
  /// The CreateFleet call in progress, retried unchanged (same ClientToken).
  fleet_request call;
  int32_t call_attempts = 0;
  bool failed_over = false; // the on-demand call for a spot shortfall ran
  /// Instances that came up, assigned to specs in request order.
  std::vector<fleet_instance> instances;
  /// Why the last call came up short: the code unfilled specs fail with.
  fleet_error shortfall;
  launch_result result;
  size_t unsettled = 0; // specs in neither list of `result` yet
};

/// Continues a hand-off once the installation client is known.
using client_continuation =
  std::function<void(caf::expected<installation_client_actor>)>;
using client_key = std::pair<std::string, int64_t>; // (App name, installation)

struct fleet_launcher_state {
  std::map<std::string, pool_config> pools;
  aws_config aws;
  timeouts_config timeouts;
  ec2_actor ec2;
  ssm_actor ssm;
  std::map<std::string, github_app_actor> apps;
  /// Each pool's ledger, told of every runner as it is configured.
  std::map<std::string, launch_recorder_actor> ledgers;
  /// Installation clients by (App name, installation id).
  std::map<client_key, installation_client_actor> clients;
  /// Hand-offs waiting for the one lookup of a client not cached yet.
  std::map<client_key, std::vector<client_continuation>> client_waiters;
  std::unordered_map<uint64_t, launch_attempt> launches;
  uint64_t next_launch = 0;
  metrics_ptr stats;
  std::mt19937_64 rng;
  static inline const char* name = "fleet_launcher";
};

fleet_launcher_actor::behavior_type
fleet_launcher(fleet_launcher_actor::stateful_pointer<fleet_launcher_state> self,
               std::vector<pool_config> pools, aws_config aws,
               timeouts_config timeouts, ec2_actor ec2, ssm_actor ssm,
               std::map<std::string, github_app_actor> apps,
               std::map<std::string, launch_recorder_actor> ledgers,
               metrics_ptr stats, uint64_t seed);

} // namespace ghscale
