#pragma once
// Each runner's lifecycle for one pool and the counts the scaler trusts.
// Reservations are atomic (one actor), so two batches never both take the
// last slot. On (re)start it reconciles from EC2 (instances tagged with the
// pool) and answers `errc::not_ready` to reservations until then.
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "actors/ops/metrics.hpp"

#include <caf/all.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>

namespace ghscale {

/// One runner as the ledger knows it.
struct runner_record {
  /// The instance id, or "slot-<reservation>-<n>" while `requested`.
  std::string id;
  runner_state state = runner_state::requested;
  /// The job it was launched for; job_id 0 for idle top-ups and for
  /// instances found by reconciliation.
  job_key job{0, 0};
  /// Where its runner registers, so a replacement can be launched for `job`.
  repository_ref target;
  /// The repository of `job`, to put the job back on its queue if need be.
  repository_ref repository;
  int64_t installation_id = 0;
  std::string runner_name;
  /// GitHub's id of its registration, once known (launch or reconciliation).
  int64_t runner_id = 0;
  /// The reservation that requested it (requested slots only).
  uint64_t reservation = 0;
  caf::actor_clock::time_point requested_at;
  caf::actor_clock::time_point launched_at;
  caf::actor_clock::time_point ready_at; // last became ready (idle)
  caf::actor_clock::time_point started_at;
  /// What the last reconciliation saw: a registration on GitHub, and the
  /// instance's orphan and bypass-removal tags.
  bool registered = false;
  bool orphan_tagged = false;
  bool bypass_removal = false;
  /// A spot interruption warning came for its instance.
  bool interrupted = false;
  bool is_topup() const noexcept { return job.job_id == 0; }
};

/// Why the ledger remembers a job key, weakest first: a slot was reserved
/// for it and its runner is being set up (forgotten again if the launch does
/// not configure one), a runner was configured for it (its registration
/// handed to its instance), or a runner was seen taking it. Only the last
/// two make a job served; the first makes another delivery of it wait.
enum class served_by : uint8_t { reservation, configured, observed };

struct served_job {
  served_by source = served_by::reservation;
  caf::actor_clock::time_point since;
};

constexpr size_t runner_state_count
  = static_cast<size_t>(runner_state::terminated) + 1;

/// What the ledger derives from its runners, kept in step with every change
/// so no message has to scan all runners. Only the helpers in
/// runner_ledger.cpp that add, change or remove a runner touch it. Entries
/// end in the runner id: among equal keys the first is the runner a scan of
/// `runners` (ordered by id) would find first.
struct runner_indexes {
  /// Runners per state, and top-up runners per state.
  std::array<int32_t, runner_state_count> by_state{};
  std::array<int32_t, runner_state_count> topups_by_state{};
  /// Requested slots per reservation as (job, id); every top-up slot under
  /// job_key{0, 0}, since any of them fills a top-up launch.
  std::map<uint64_t, std::set<std::pair<job_key, std::string>>>
    slots_by_reservation;
  /// Requested slots, oldest first, to release overdue ones.
  std::set<std::pair<caf::actor_clock::time_point, std::string>> slots_by_age;
  /// (runner name, id) of every runner with a name.
  std::set<std::pair<std::string, std::string>> ids_by_name;
  /// (job, id) of pending and ready runners: the ones a job can still take.
  std::set<std::pair<job_key, std::string>> unstarted_by_job;
  /// (job, id) of requested slots reserved for a job (not top-ups): a
  /// runner on its way for that job.
  std::set<std::pair<job_key, std::string>> requested_by_job;

  friend bool operator==(const runner_indexes& a, const runner_indexes& b) {
    return a.by_state == b.by_state && a.topups_by_state == b.topups_by_state
           && a.slots_by_reservation == b.slots_by_reservation
           && a.slots_by_age == b.slots_by_age && a.ids_by_name == b.ids_by_name
           && a.unstarted_by_job == b.unstarted_by_job
           && a.requested_by_job == b.requested_by_job;
  }
};

struct runner_ledger_state {
  /// Every runner, by id.
  std::map<std::string, runner_record> runners;
  runner_indexes index;
  /// Dedupe memory: jobs that have (or had) a runner, kept for a day.
  std::unordered_map<job_key, served_job> served;
  /// Jobs whose runner another job took, oldest first: each needs a
  /// replacement runner (their messages are gone).
  std::map<job_key, runner_spec> needs_runner;
  /// Jobs with a replacement slot reserved, until its launch is reported.
  std::map<job_key, runner_spec> replacing;
  /// A job that took another job's runner while its own was still being
  /// launched: that launch's runner goes to the other job, by taker.
  std::map<job_key, runner_spec> swaps;
  /// Instances recorded as configured before their launch's report, by
  /// reservation: the report skips them.
  std::map<uint64_t, std::set<std::string>> configured_early;
  /// Reservations whose requested slots expired before their report came,
  /// with the time they expired: a late report still records its runners.
  std::map<uint64_t, caf::actor_clock::time_point> expired_reservations;
  uint64_t next_reservation = 1;
  /// False until the first reconciliation answered.
  bool reconciled = false;
  bool reconciling = false;
  /// Consecutive failed reconciliations, for the retry backoff.
  int32_t reconcile_failures = 0;
  /// When the periodic reconciliation is due next (one timer at a time).
  caf::actor_clock::time_point next_periodic_reconcile;
  /// When the dedupe memory was last swept.
  caf::actor_clock::time_point memory_swept_at;
  std::mt19937_64 rng;
  static inline const char* name = "runner_ledger";
};

/// Rebuilds the indexes from `st.runners` (O(n): for tests and debugging,
/// never on the message path) and names the first that drifted, if any.
caf::error check_runner_indexes(const runner_ledger_state& st);

runner_ledger_actor::behavior_type
runner_ledger(runner_ledger_actor::stateful_pointer<runner_ledger_state> self,
              pool_config pool, timeouts_config timeouts, ec2_actor ec2,
              metrics_ptr stats);

} // namespace ghscale
