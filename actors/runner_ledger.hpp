#pragma once
// Each runner's lifecycle for one pool and the counts the scaler trusts.
// Reservations are atomic (one actor), so two batches never both take the
// last slot. On (re)start it reconciles from EC2 (instances tagged with the
// pool) and answers `errc::not_ready` to reservations until then.
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "actors/metrics.hpp"

#include <caf/all.hpp>

namespace ghscale {

struct runner_ledger_state {
  static inline const char* name = "runner_ledger";
};

runner_ledger_actor::behavior_type
runner_ledger(runner_ledger_actor::stateful_pointer<runner_ledger_state> self,
              pool_config pool, timeouts_config timeouts, ec2_actor ec2,
              metrics_ptr stats);

} // namespace ghscale
