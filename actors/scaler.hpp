#pragma once
// One per pool: gathers scale requests for a window, drops duplicates and
// jobs no longer queued, reserves capacity in the ledger, launches once per
// decision and answers every receipt with an outcome.
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "actors/metrics.hpp"

#include <caf/all.hpp>

namespace ghscale {

struct scaler_state {
  static inline const char* name = "scaler";
};

scaler_actor::behavior_type
scaler(scaler_actor::stateful_pointer<scaler_state> self, pool_config pool,
       scaler_config window, retry_config retry, timeouts_config timeouts,
       runner_ledger_actor ledger, fleet_launcher_actor launcher,
       github_app_actor github, metrics_ptr stats, uint64_t seed);

} // namespace ghscale
