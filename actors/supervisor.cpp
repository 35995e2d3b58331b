#include "actors/supervisor.hpp"

#include "actors/backoff.hpp"
#include "actors/ops/log.hpp"

#include <deque>
#include <optional>
#include <random>
#include <utility>

namespace ghscale {

supervisor_policy supervisor_policy::from(const supervision_config& cfg,
                                          uint64_t seed, metrics_ptr stats) {
  supervisor_policy out;
  out.max_restarts = cfg.max_restarts;
  out.within = cfg.within;
  out.initial_backoff = cfg.initial_backoff;
  out.max_backoff = cfg.max_backoff;
  out.jitter = cfg.jitter;
  out.seed = seed;
  out.stats = std::move(stats);
  return out;
}

namespace {

// -- relay ---------------------------------------------------------------------

struct relay_state {
  std::string child; // whose incarnations it forwards to, for errors and logs
  caf::actor target; // the current incarnation; null while the child is down
  static inline const char* name = "relay";
};

/// Names a dropped message without printing its content (which may hold
/// data we must not log): its leading atom, if it has one.
std::string message_kind(const caf::type_erased_tuple& xs) {
  if (!xs.empty() && xs.match_element<caf::atom_value>(0))
    return caf::to_string(xs.get_as<caf::atom_value>(0));
  return "?";
}

// A relay lives as long as someone holds a handle to it (its callers, its
// child_spec), or until it receives an exit message. It is deliberately not
// linked to its supervisor: a supervisor that escalates is restarted by its
// parent and must find the same relays alive to rebind them.
caf::behavior relay(caf::stateful_actor<relay_state>* self, std::string child) {
  self->state.child = std::move(child);
  self->set_default_handler(
    [self](caf::scheduled_actor*,
           caf::message_view& xs) -> caf::result<caf::message> {
      auto& st = self->state;
      if (st.target)
        return self->delegate(st.target, xs.move_content_to_message());
      if (self->current_mailbox_element()->mid.is_request())
        return caf::make_error(errc::unavailable, st.child + " is restarting");
      log::warn("dropped", {{"relay", st.child},
                            {"message", message_kind(xs.content())},
                            {"reason", "child is down"}});
      return caf::message{}; // nothing goes back: `drop` would send an error
    });
  return {
    [self](atom::rebind, caf::actor target) {
      self->state.target = std::move(target);
    },
  };
}

// -- supervisor ------------------------------------------------------------------

// Messages a supervisor sends itself: the backoff of child `i` is over; child
// `i` has had its grace period to stop.
using restart_atom = caf::atom_constant<caf::atom("sv_restart")>;
using overdue_atom = caf::atom_constant<caf::atom("sv_overdue")>;

/// How long a child may take to stop before it is killed.
constexpr caf::timespan stop_grace = std::chrono::seconds(5);

struct child_slot {
  child_spec spec;
  caf::actor current; // the running incarnation; null while down
  caf::actor_clock::time_point started;
  int32_t restarts = 0; // over the supervisor's lifetime, for status
  int32_t attempt = 0;  // restarts since it last ran for `within` (backoff)
};

struct supervisor_state {
  std::string label;
  supervisor_policy policy;
  std::vector<child_slot> children; // in start order
  std::deque<caf::actor_clock::time_point> recent_restarts; // for intensity
  std::mt19937_64 rng;
  // Set once the supervisor winds down: children [0, stop_cursor) are still
  // to be stopped, the last of them is the one being waited for.
  bool stopping = false;
  size_t stop_cursor = 0;
  caf::error final_reason; // what the supervisor quits with, never "normal"
  static inline const char* name = "supervisor";
};

using supervisor_ptr = caf::stateful_actor<supervisor_state>*;

std::optional<size_t> find_child(const supervisor_state& st,
                                 const caf::actor_addr& who) {
  for (size_t i = 0; i < st.children.size(); ++i)
    if (st.children[i].current && st.children[i].current.address() == who)
      return i;
  return std::nullopt;
}

void rebind(supervisor_ptr self, const child_slot& slot) {
  if (slot.spec.relay)
    self->send(slot.spec.relay, atom::rebind_v, slot.current);
}

bool abnormal(const caf::error& reason) {
  return reason && reason != caf::exit_reason::user_shutdown;
}

bool should_restart(restart_type type, const caf::error& reason) {
  switch (type) {
    case restart_type::permanent: return true;
    case restart_type::transient: return abnormal(reason);
    case restart_type::temporary: break;
  }
  return false;
}

/// Records a restart at `now`; true if that makes more than `max_restarts`
/// within the trailing `within` window.
bool intensity_exceeded(supervisor_state& st, caf::actor_clock::time_point now) {
  auto& recent = st.recent_restarts;
  while (!recent.empty() && now - recent.front() > st.policy.within)
    recent.pop_front();
  recent.push_back(now);
  return recent.size() > static_cast<size_t>(st.policy.max_restarts);
}

/// Asks `child` to exit without naming us as the sender. An exit message
/// from a linked actor dissolves the link at the receiver, and the link is
/// how we learn that a child has ended (like `anon_send_exit`, which only
/// takes an `exit_reason`).
void request_exit(supervisor_ptr self, const caf::actor& child,
                  caf::error reason) {
  child->enqueue(nullptr, caf::make_message_id(),
                 caf::make_message(
                   caf::exit_msg{child.address(), std::move(reason)}),
                 self->context());
}

/// Stops the last child still running below the stop cursor and waits for
/// it; quits once none is left.
void stop_next(supervisor_ptr self) {
  auto& st = self->state;
  for (; st.stop_cursor > 0; --st.stop_cursor) {
    auto index = st.stop_cursor - 1;
    auto& slot = st.children[index];
    if (slot.current) {
      request_exit(self, slot.current, caf::exit_reason::user_shutdown);
      self->delayed_send(self, stop_grace, overdue_atom::value,
                         static_cast<uint64_t>(index));
      return;
    }
  }
  log::info("stopped", {{"supervisor", st.label},
                        {"reason", self->system().render(st.final_reason)}});
  self->quit(st.final_reason);
}

void begin_stop(supervisor_ptr self, caf::error reason) {
  auto& st = self->state;
  st.stopping = true;
  st.final_reason = std::move(reason);
  st.stop_cursor = st.children.size();
  stop_next(self);
}

/// A child that ignored its stop request for `stop_grace`: kill it. A kill
/// coming back over the link would be fatal to us even though we trap exits,
/// so watch the child with a monitor instead before pulling the trigger.
void kill_overdue(supervisor_ptr self, size_t index) {
  auto& st = self->state;
  if (!st.stopping || index + 1 != st.stop_cursor)
    return;
  auto& child = st.children[index].current;
  if (!child)
    return;
  log::warn("kill", {{"supervisor", st.label},
                     {"child", st.children[index].spec.name},
                     {"reason", "did not stop in time"}});
  self->unlink_from(child);
  self->monitor(child);
  self->send_exit(child, caf::exit_reason::kill);
}

void on_child_exit(supervisor_ptr self, size_t index, caf::error reason);

void start_child(supervisor_ptr self, size_t index) {
  auto& slot = self->state.children[index];
  slot.started = self->clock().now();
  auto child = slot.spec.start(self);
  if (!child) {
    on_child_exit(self, index,
                  caf::make_error(errc::unavailable,
                                  slot.spec.name + " failed to start"));
    return;
  }
  self->link_to(child);
  slot.current = std::move(child);
  rebind(self, slot);
}

void schedule_restart(supervisor_ptr self, size_t index,
                      const caf::error& reason) {
  auto& st = self->state;
  auto& slot = st.children[index];
  auto now = self->clock().now();
  // A child that ran for a whole window starts its backoff afresh.
  slot.attempt = now - slot.started > st.policy.within ? 1 : slot.attempt + 1;
  ++slot.restarts;
  if (st.policy.stats)
    st.policy.stats->add("ghscale_actor_restarts_total", {{"actor", slot.spec.name}});
  auto delay = jittered_backoff(st.policy.initial_backoff,
                                st.policy.max_backoff, slot.attempt,
                                st.policy.jitter, st.rng);
  log::warn("restart", {{"supervisor", st.label},
                        {"child", slot.spec.name},
                        {"restarts", slot.restarts},
                        {"reason", self->system().render(reason)},
                        {"delay", caf::deep_to_string(delay)}});
  self->delayed_send(self, delay, restart_atom::value,
                     static_cast<uint64_t>(index));
}

void on_child_exit(supervisor_ptr self, size_t index, caf::error reason) {
  auto& st = self->state;
  auto& slot = st.children[index];
  slot.current = nullptr;
  rebind(self, slot);
  if (st.stopping) {
    if (index + 1 == st.stop_cursor)
      stop_next(self);
    return;
  }
  if (!should_restart(slot.spec.restart, reason)) {
    log::info("child stopped", {{"supervisor", st.label},
                                {"child", slot.spec.name},
                                {"reason", self->system().render(reason)}});
    return;
  }
  if (intensity_exceeded(st, self->clock().now())) {
    // Our parent must see a crash, and "normal" would not look like one.
    auto escalation = reason ? std::move(reason)
                             : caf::make_error(errc::unavailable,
                                               slot.spec.name
                                                 + " restarted too often");
    log::error("escalate", {{"supervisor", st.label},
                            {"child", slot.spec.name},
                            {"restarts", static_cast<int64_t>(
                                           st.recent_restarts.size())},
                            {"within", caf::deep_to_string(st.policy.within)},
                            {"reason", self->system().render(escalation)}});
    begin_stop(self, std::move(escalation));
    return;
  }
  schedule_restart(self, index, reason);
}

void on_outside_exit(supervisor_ptr self, const caf::error& reason) {
  auto& st = self->state;
  if (st.stopping)
    return;
  log::info("shutdown", {{"supervisor", st.label},
                         {"reason", self->system().render(reason)}});
  begin_stop(self, reason ? reason : caf::exit_reason::user_shutdown);
}

node_status status_of(const supervisor_state& st) {
  node_status out;
  for (auto& slot : st.children)
    out.children.push_back(
      child_status{slot.spec.name, static_cast<bool>(slot.current),
                   slot.restarts});
  return out;
}

caf::behavior supervisor(supervisor_ptr self, std::string label,
                         std::vector<child_spec> children,
                         supervisor_policy policy) {
  auto& st = self->state;
  st.label = std::move(label);
  st.policy = policy;
  st.rng.seed(policy.seed);
  for (auto& spec : children)
    st.children.push_back(child_slot{std::move(spec), {}, {}, 0, 0});
  self->set_exit_handler([self](caf::exit_msg& msg) {
    if (auto index = find_child(self->state, msg.source))
      on_child_exit(self, *index, std::move(msg.reason));
    else
      on_outside_exit(self, msg.reason);
  });
  // Only children we had to kill are monitored (see kill_overdue).
  self->set_down_handler([self](caf::down_msg& msg) {
    if (auto index = find_child(self->state, msg.source))
      on_child_exit(self, *index, std::move(msg.reason));
  });
  for (size_t i = 0; i < st.children.size() && !st.stopping; ++i)
    start_child(self, i);
  return {
    [self](restart_atom, uint64_t index) {
      auto& st = self->state;
      if (!st.stopping && index < st.children.size()
          && !st.children[index].current)
        start_child(self, index);
    },
    [self](overdue_atom, uint64_t index) { kill_overdue(self, index); },
    [self](atom::status) { return status_of(self->state); },
    // Chaos testing: crash a child as a failing handler would.
    [self](atom::inject, const std::string& child) {
      for (auto& slot : self->state.children)
        if (slot.spec.name == child && slot.current) {
          request_exit(self, slot.current,
                       caf::make_error(caf::sec::runtime_error,
                                       "crash injected into " + child));
          return;
        }
      log::warn("inject", {{"supervisor", self->state.label},
                           {"child", child},
                           {"reason", "no such running child"}});
    },
  };
}

} // namespace

caf::actor spawn_relay(caf::actor_system& sys, std::string name) {
  return sys.spawn(relay, std::move(name));
}

caf::actor spawn_supervisor(caf::actor_system& sys, std::string name,
                            std::vector<child_spec> children,
                            supervisor_policy policy) {
  return sys.spawn(supervisor, std::move(name), std::move(children), policy);
}

caf::actor spawn_supervisor(caf::local_actor* parent, std::string name,
                            std::vector<child_spec> children,
                            supervisor_policy policy) {
  return parent->spawn<caf::linked>(supervisor, std::move(name),
                                    std::move(children), policy);
}

} // namespace ghscale
