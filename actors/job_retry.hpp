#pragma once
// Delayed re-checks of jobs whose message was acked without a runner of
// their own: in a reusable pool, a runner launched for job X may take job Y
// first, and over its cap a reusable pool acks jobs a busy runner will take
// later. After a backoff, job retry asks GitHub whether the job still waits
// and the ledger whether a runner is on its way; a job still queued with
// none is put back on its pool's queue, as a webhook would. Its own errors
// are logged and counted, never retried in a loop: a failed re-check uses
// up one of the job's attempts.
#include "actors/ops/metrics.hpp"
#include "messages/actors.hpp"
#include "messages/config.hpp"

#include <caf/all.hpp>

#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <unordered_map>

namespace ghscale {

/// What job retry needs of one pool.
struct job_retry_route {
  job_tracker_actor ledger;
  queue_actor queue; // where a job still waiting is put back
  github_app_actor github;
};

struct job_retry_state {
  /// Re-checks waiting for their timer, by id.
  std::map<uint64_t, recheck> due;
  uint64_t next_id = 1;
  /// Re-checks made per job, and when the job was last scheduled: a job
  /// gets at most `max_attempts`, forgotten a day after its last one.
  struct attempts {
    int32_t made = 0;
    caf::actor_clock::time_point last;
  };
  std::unordered_map<job_key, attempts> jobs;
  caf::actor_clock::time_point swept_at;
  std::mt19937_64 rng;
  static inline const char* name = "job_retry";
};

job_retry_actor::behavior_type
job_retry(job_retry_actor::stateful_pointer<job_retry_state> self,
          job_retry_config cfg, std::map<std::string, job_retry_route> routes,
          timeouts_config timeouts, metrics_ptr stats, uint64_t seed);

} // namespace ghscale
