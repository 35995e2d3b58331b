#pragma once
// OTP-like supervision for CAF 0.17, which has none built in.
//
// A supervisor starts its children in order, links to each, and restarts
// crashed ones one-for-one with jittered exponential backoff. More than
// `max_restarts` restarts within `within` make it give up: it stops its
// children (in reverse order) and exits with the last failure, which its own
// parent sees as a crash (escalation). On an exit request from outside it
// stops its children in reverse start order, waiting for each, then exits.
//
// Callers never hold a child directly: each child may have a *relay*, a
// stable handle that forwards every message to the child's current
// incarnation and answers `errc::unavailable` while the child is down.
#include "actors/ops/metrics.hpp"
#include "messages/actors.hpp"
#include "messages/config.hpp"

#include <caf/all.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace ghscale {

enum class restart_type : uint8_t {
  permanent, // always restarted
  transient, // restarted only after an abnormal exit
  temporary, // never restarted
};

struct child_spec {
  std::string name;
  restart_type restart = restart_type::permanent;
  /// Spawns one incarnation; `parent` is the supervisor (spawn from it).
  std::function<caf::actor(caf::local_actor* parent)> start;
  /// Optional stable handle (from spawn_relay) rebound on every (re)start.
  caf::actor relay;
};

struct supervisor_policy {
  int32_t max_restarts = 5;
  caf::timespan within = std::chrono::seconds(60);
  caf::timespan initial_backoff = std::chrono::milliseconds(100);
  caf::timespan max_backoff = std::chrono::seconds(10);
  double jitter = 0.2;
  uint64_t seed = 1;
  /// Where restarts are counted (`ghscale_actor_restarts_total{actor}`);
  /// may be null.
  metrics_ptr stats;
  static supervisor_policy from(const supervision_config& cfg, uint64_t seed,
                                metrics_ptr stats = nullptr);
};

/// A stable handle: forwards everything to its current target.
caf::actor spawn_relay(caf::actor_system& sys, std::string name);

/// Spawns a supervisor (a dynamic actor that also answers
/// `(atom::status) -> node_status`).
caf::actor spawn_supervisor(caf::actor_system& sys, std::string name,
                            std::vector<child_spec> children,
                            supervisor_policy policy);

/// The same, spawned by (and linked to) a parent supervisor, for subtrees.
caf::actor spawn_supervisor(caf::local_actor* parent, std::string name,
                            std::vector<child_spec> children,
                            supervisor_policy policy);

/// A child spawned from `fun(args...)` behind an existing relay: for
/// children that need each other's handles before either starts.
template <class Fun, class... Ts>
child_spec make_child_behind(caf::actor relay, restart_type restart,
                             std::string name, Fun fun, Ts... args) {
  return child_spec{std::move(name), restart,
                    [=](caf::local_actor* parent) {
                      return caf::actor_cast<caf::actor>(
                        parent->spawn(fun, args...));
                    },
                    std::move(relay)};
}

/// A child spawned from `fun(args...)`; `out` becomes its stable relay.
template <class Handle, class Fun, class... Ts>
child_spec make_child(caf::actor_system& sys, restart_type restart,
                      std::string name, Handle& out, Fun fun, Ts... args) {
  auto relay = spawn_relay(sys, name);
  out = caf::actor_cast<Handle>(relay);
  return make_child_behind(relay, restart, std::move(name), fun, args...);
}

} // namespace ghscale
