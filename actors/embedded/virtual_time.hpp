#pragma once
// Driving an actor system that runs on CAF's deterministic scheduler
// (`scheduler.policy=testing`): nothing runs and no time passes unless the
// driver says so. Shared by `ghscale simulate` and the tests.
#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include <chrono>
#include <utility>

namespace ghscale::scenario {

/// Runs every message and timer due within `d` of virtual time, each timer
/// at its own time, so timers armed on the way fire on time too; the clock
/// ends `d` later.
inline void advance(caf::scheduler::test_coordinator& sched, caf::timespan d) {
  auto& clock = sched.clock();
  auto end = clock.now() + d;
  sched.run();
  auto& schedule = clock.schedule();
  while (!schedule.empty() && schedule.begin()->first <= end) {
    auto next = schedule.begin()->first;
    if (next > clock.now())
      sched.advance_time(next - clock.now());
    else
      sched.trigger_timeout();
    sched.run();
  }
  if (end > clock.now())
    sched.advance_time(end - clock.now());
  sched.run();
}

/// Non-blocking pop of the next reply of type T from `who`'s mailbox;
/// `sec::bad_function_call` means "nothing there".
template <class T>
caf::expected<T> receive_now(caf::scoped_actor& who) {
  caf::expected<T> out{caf::sec::bad_function_call};
  who->receive([&](T& x) { out = std::move(x); },
               [&](caf::error& err) { out = std::move(err); },
               caf::after(std::chrono::seconds(0)) >> [] {});
  return out;
}

/// Sends `xs` to `dest` as a plain message, runs everything that follows and
/// returns the answer (a handler's result comes back to the sender).
template <class T, class Handle, class... Ts>
caf::expected<T> ask_now(caf::scheduler::test_coordinator& sched,
                         caf::scoped_actor& who, const Handle& dest,
                         Ts&&... xs) {
  who->send(dest, std::forward<Ts>(xs)...);
  sched.run();
  return receive_now<T>(who);
}

} // namespace ghscale::scenario
