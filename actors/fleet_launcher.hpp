#pragma once
// Turns a launch request into one CreateFleet (instant, idempotent
// ClientToken), fails spot shortfalls over to on-demand for listed error
// codes, registers a runner per instance through its installation client and
// hands the config over via SSM. A failed registration terminates that
// instance. Throttled EC2 calls are retried with jittered backoff and the
// same ClientToken.
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "actors/metrics.hpp"
#include <map>

#include <caf/all.hpp>

namespace ghscale {

struct fleet_launcher_state {
  static inline const char* name = "fleet_launcher";
};

fleet_launcher_actor::behavior_type
fleet_launcher(fleet_launcher_actor::stateful_pointer<fleet_launcher_state> self,
               std::vector<pool_config> pools, aws_config aws,
               timeouts_config timeouts, ec2_actor ec2, ssm_actor ssm,
               std::map<std::string, github_app_actor> apps,
               metrics_ptr stats, uint64_t seed);

} // namespace ghscale
