#pragma once
// One per pool: gathers queued jobs for a window, drops duplicates and jobs
// no longer queued, reserves capacity in the ledger, launches no more
// runners than GitHub's budget can register in time, and answers every
// delivery with an outcome once its job is settled.
//
// A job is settled when a runner is configured for it, when it is proven not
// to need one, or when it is given back to the queue (over the cap, a failed
// launch, a drain). Until then every delivery of it (a duplicate, or the
// same message received again) waits for that one outcome: it is never
// acked on the strength of a reservation, and never launched for twice.
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "actors/ops/metrics.hpp"

#include <caf/all.hpp>

#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

namespace ghscale {

/// A scale request: answered once every delivery it carries is settled.
struct scale_call {
  caf::typed_response_promise<batch_outcome> promise;
  std::vector<message_outcome> outcomes; // one per delivery, in order
  size_t unsettled = 0;
};

/// One delivery of a job: the request it came in and its place there.
struct job_delivery {
  uint64_t call = 0;
  size_t slot = 0;
  int32_t receive_count = 1;
};

enum class job_phase : uint8_t {
  window,  // waiting for the next decision
  deciding, // a decision is under way
  budget,  // admitted by no installation client yet: waits for its budget
};

/// A job with deliveries not answered yet.
struct job_entry {
  pending_job first; // its first delivery: the event decisions work with
  std::vector<job_delivery> deliveries;
  job_phase phase = job_phase::window;
  /// Given back to its queue if still waiting for the budget then, so the
  /// poller's request never times out.
  caf::timespan answer_by{0};
  /// Waiting for the budget: when its installation may admit it.
  caf::timespan budget_at{0};
};

struct scaler_state {
  std::map<uint64_t, scale_call> calls;
  uint64_t next_call = 1;
  std::map<job_key, job_entry> jobs;
  /// Jobs of the open window, in arrival order.
  std::vector<job_key> window;
  /// Id of the open window (0: none); each window gets a new id so a late
  /// flush of a window closed early is ignored.
  uint64_t open_window = 0;
  uint64_t last_window = 0;
  /// When the armed budget timer fires, if one is armed.
  std::optional<caf::timespan> tick_at;
  /// Installation clients by installation id, asked of the App once.
  std::map<int64_t, installation_client_actor> clients;
  bool draining = false;
  /// Draining: what goes back to the queue stays hidden at least this long.
  caf::timespan give_back_after{0};
  /// Decisions under way; a drain answers once they are over.
  int32_t deciding = 0;
  std::vector<caf::typed_response_promise<bool>> drain_waiters;
  /// A replacement decision is under way (one at a time).
  bool refilling = false;
  std::mt19937_64 rng;
  static inline const char* name = "scaler";
};

scaler_actor::behavior_type
scaler(scaler_actor::stateful_pointer<scaler_state> self, pool_config pool,
       scaler_config window, retry_config retry, timeouts_config timeouts,
       runner_ledger_actor ledger, fleet_launcher_actor launcher,
       github_app_actor github, job_retry_actor job_retry, queue_actor queue,
       metrics_ptr stats, uint64_t seed);

} // namespace ghscale
