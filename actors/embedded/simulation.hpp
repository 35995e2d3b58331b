#pragma once
// `ghscale simulate`: replays a trace through the real actor graph (node,
// supervision tree, pollers, scalers, launcher, GitHub clients, ledgers) on
// the in-process backends, in virtual time (CAF's deterministic scheduler),
// and reports what happened, measured against the simulated world's ground
// truth rather than ghscale's own bookkeeping.
#include "actors/embedded/embedded_backends.hpp"
#include "actors/embedded/trace.hpp"
#include "messages/config.hpp"

#include <caf/expected.hpp>

#include <string>
#include <utility>
#include <vector>

namespace ghscale::scenario {

struct simulation_options {
  /// After the last trace entry, run until the world is quiet or this long.
  caf::timespan horizon = std::chrono::hours(6);
  /// How often to check for quiet after the last entry.
  caf::timespan check_every = std::chrono::seconds(30);
  /// How often the poll loops are counted (the registry's status).
  caf::timespan loop_sample_every = std::chrono::seconds(10);
};

struct pool_peak {
  std::string pool;
  int64_t peak = 0; // most instances alive at once (ground truth)
  int32_t cap = 0;
};

/// One queue's poll loops over the run, from the registry's status sampled
/// every `loop_sample_every`.
struct loop_timeline {
  std::string queue;
  int32_t min_loops = 0; // configured bounds
  int32_t max_loops = 0;
  int32_t min = 0;       // sampled
  int32_t max = 0;
  int32_t last = 0;
  int64_t scaled_up = 0;
  int64_t scaled_down = 0;
  int64_t killed = 0;    // the trace's kill_loop entries for the queue
  int64_t revived = 0;   // loops the registry replaced
  double max_revival_seconds = 0;
  /// (simulated second, loops) at the first sample and at every change.
  std::vector<std::pair<double, int32_t>> series;
};

/// A pool's runners by lifecycle state at the end, as its ledger says.
struct pool_runners {
  std::string pool;
  ledger_counts counts;
};

struct simulation_report {
  std::string trace;
  double simulated_seconds = 0;
  int64_t jobs_seen = 0;  // distinct queued jobs in the trace
  int64_t deliveries = 0; // queue messages, duplicates included
  int64_t jobs_started = 0;
  int64_t jobs_completed = 0;
  int64_t jobs_unrouted = 0;
  int64_t jobs_dead_lettered = 0; // their messages, at the end
  int64_t jobs_still_queued = 0;  // their messages, at the end
  /// Routed to a pool and never taken by a runner, whatever the queues say.
  int64_t jobs_lost = 0;
  int64_t node_restarts = 0; // the trace's `restart` entries
  int64_t runners_launched = 0;
  int64_t duplicate_launches = 0; // runners beyond the jobs (never ran one)
  int64_t runners_taken = 0;      // taken by another job, then replaced
  int64_t duplicates_suppressed = 0;
  int64_t messages_acked = 0;
  int64_t messages_retried = 0;
  int64_t messages_dead_lettered = 0;
  int64_t restarts = 0;
  std::vector<pool_peak> peaks;
  int64_t latency_samples = 0; // queue-to-launch, seconds
  double latency_p50 = 0;
  double latency_p95 = 0;
  double latency_p99 = 0;
  std::vector<std::pair<std::string, int64_t>> api_calls;
  // Poll loops: killed ones must be replaced within the threshold, which is
  // the registry's stale_after plus one heartbeat.
  std::vector<loop_timeline> loops;
  double revival_threshold_seconds = 0;
  // Runner lifecycle and scale-down.
  std::vector<pool_runners> runners_by_state;
  std::vector<std::pair<std::string, int64_t>> reaper_actions; // by action
  int64_t reaper_passes = 0; // simulated time / reap_interval, per pool
  int64_t reaper_api_calls = 0;
  double reaper_calls_per_pass = 0;
  int64_t spot_interrupted = 0;   // instances warned (ground truth)
  int64_t jobs_interrupted = 0;   // started, then their instance was reclaimed
  int64_t ghosts_left = 0;  // registrations whose instance is gone, at the end
  int64_t orphans_left = 0; // instances alive without a registration, at the end
  // Time-to-start (queued to started on GitHub), seconds.
  int64_t wait_samples = 0;
  double wait_p50 = 0;
  double wait_p95 = 0;
  double wait_p99 = 0;

  /// 0 lost (every routed job ran), 0 duplicate launches, every peak within
  /// its cap, every killed
  /// loop replaced within the threshold, no ghost or orphan left.
  bool ok() const;
};

/// Delivers one trace entry to the world it describes: a job to the
/// simulated GitHub, a fault to the backend it names, a crash to the node,
/// a poll loop's death to the poll loops.
void inject(const trace_entry& entry, const embedded_world& world,
            const node_handles& node);

caf::expected<simulation_report>
run_simulation(const config& cfg, const std::vector<trace_entry>& trace,
               const std::string& trace_name,
               const simulation_options& opts = {});

/// Human-readable report, or one JSON object.
std::string render_report(const simulation_report& r, bool json);

} // namespace ghscale::scenario
