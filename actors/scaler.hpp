#pragma once
// One per pool: gathers scale requests for a window, drops duplicates and
// jobs no longer queued, reserves capacity in the ledger, launches once per
// decision and answers every receipt with an outcome.
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "actors/metrics.hpp"

#include <caf/all.hpp>

#include <cstdint>
#include <map>
#include <random>
#include <vector>

namespace ghscale {

/// A scale request waiting for the decision of its window.
struct scale_call {
  caf::typed_response_promise<batch_outcome> promise;
  std::vector<pending_job> jobs;
};

struct scaler_state {
  /// Id of the open window (0: none open); each window gets a new id so a
  /// late flush of a window closed early is ignored.
  uint64_t open_window = 0;
  uint64_t last_window = 0;
  std::vector<scale_call> waiting;
  size_t waiting_jobs = 0;
  /// Installation clients by installation id, asked of the App once.
  std::map<int64_t, installation_client_actor> clients;
  std::mt19937_64 rng;
  static inline const char* name = "scaler";
};

scaler_actor::behavior_type
scaler(scaler_actor::stateful_pointer<scaler_state> self, pool_config pool,
       scaler_config window, retry_config retry, timeouts_config timeouts,
       runner_ledger_actor ledger, fleet_launcher_actor launcher,
       github_app_actor github, job_retry_actor job_retry, metrics_ptr stats,
       uint64_t seed);

} // namespace ghscale
