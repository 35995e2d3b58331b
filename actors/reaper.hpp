#pragma once
// Scale-down for one pool. A pass describes the pool's instances, lists its
// runners' registrations on GitHub, has the ledger reconcile both, then:
// retires idle runners above the idle minimum (deregister first, terminate
// only once GitHub let go of them, so a runner that took a job is kept),
// tags instances that never registered as orphans and terminates them one
// pass later, and deletes registrations whose instance is gone. Instances
// tagged to bypass removal are never touched.
#include "actors/ops/metrics.hpp"
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "transport/wall_clock.hpp"

#include <caf/all.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace ghscale {

/// Where a pool's runners register, and through which installation.
struct registration_target {
  repository_ref target;
  int64_t installation_id = 0;
  friend bool operator==(const registration_target& a,
                         const registration_target& b) {
    return a.target == b.target && a.installation_id == b.installation_id;
  }
};

/// An instance the pass terminates, and why.
struct doomed_instance {
  std::string instance_id;
  std::string runner_name;
  bool orphan = false; // else an idle runner already deregistered
};

/// The pass in progress: who waits for its report and what it collected.
struct reap_pass {
  std::vector<caf::typed_response_promise<reap_report>> waiters;
  reap_report report;
  pool_inventory inventory;
  /// Calls of the current step still unanswered; the step ends at zero.
  size_t outstanding = 0;
  std::vector<doomed_instance> doomed;
};

struct reaper_state {
  pool_config pool;
  ec2_actor ec2;
  ledger_reconciler_actor ledger;
  github_app_actor app;
  timeouts_config timeouts;
  clock_bridge wall;
  metrics_ptr stats;
  /// Targets of the runners the previous pass's view held: listed again
  /// even if no instance names them any more (their ghosts live there).
  std::vector<registration_target> known_targets;
  std::optional<reap_pass> pass;
  /// GitHub calls waiting for one of the few slots the reaper uses.
  std::deque<std::function<void()>> github_backlog;
  int32_t github_in_flight = 0;
  static inline const char* name = "reaper";
};

reaper_actor::behavior_type
reaper(reaper_actor::stateful_pointer<reaper_state> self, pool_config pool,
       ec2_actor ec2, ledger_reconciler_actor ledger, github_app_actor app,
       timeouts_config timeouts, clock_bridge wall, metrics_ptr stats);

} // namespace ghscale
