#include "actors/poll_loops.hpp"

#include "actors/ops/log.hpp"

#include <algorithm>
#include <utility>

namespace ghscale {

namespace {

using loops_pointer = poll_loops_actor::stateful_pointer<poll_loops_state>;

caf::result<poller_actor>
start_loop(loops_pointer self, const std::map<std::string, poller_setup>& setups,
           const lease_keeper_actor& registry, const metrics_ptr& stats,
           uint64_t seed, const lease& held) {
  auto& st = self->state;
  if (st.draining)
    return caf::make_error(errc::shutting_down,
                           "poll loops draining: no new loop for queue "
                             + held.queue);
  auto setup = setups.find(held.queue);
  if (setup == setups.end())
    return caf::make_error(errc::not_found,
                           "poll loops: no setup for queue " + held.queue);
  auto loop = self->spawn(poller, setup->second, held, registry, stats,
                          seed + ++st.spawned);
  self->monitor(loop);
  (*st.running)[held.queue].push_back(running_loop{loop, held.loop_id});
  return loop;
}

/// Forgets a loop that ended; logs it unless it stopped in order.
void forget_loop(loops_pointer self, const caf::down_msg& msg) {
  for (auto& [queue, loops] : *self->state.running) {
    auto i = std::find_if(loops.begin(), loops.end(), [&](auto& loop) {
      return loop.handle.address() == msg.source;
    });
    if (i == loops.end())
      continue;
    if (msg.reason)
      log::warn("poll loop died", {{"queue", queue},
                                   {"loop", i->loop_id},
                                   {"reason", self->system().render(msg.reason)}});
    loops.erase(i);
    return;
  }
}

/// Drains every loop, each within its queue's drain budget; answers true
/// once every loop has answered or run out of time.
caf::result<bool> drain_all(loops_pointer self,
                            const std::map<std::string, poller_setup>& setups) {
  auto& st = self->state;
  st.draining = true;
  size_t total = 0;
  for (auto& entry : *st.running)
    total += entry.second.size();
  if (total == 0)
    return true;
  auto promise = self->make_response_promise<bool>();
  auto left = std::make_shared<size_t>(total);
  auto one_done = [=]() mutable {
    if (--*left == 0)
      promise.deliver(true);
  };
  for (auto& [queue, loops] : *st.running) {
    auto budget = setups.at(queue).timeouts.drain;
    for (auto& loop : loops)
      self->request(loop.handle, budget, atom::drain_v)
        .then([=](bool) mutable { one_done(); },
              [=, queue = queue, id = loop.loop_id](const caf::error& err) mutable {
                log::warn("poll loop did not drain in time",
                          {{"queue", queue},
                           {"loop", id},
                           {"error", self->system().render(err)}});
                one_done();
              });
  }
  return promise;
}

/// Kills one loop of `queue` at random, as a crash would.
void kill_one(loops_pointer self, const std::string& queue) {
  auto& st = self->state;
  auto loops = st.running->find(queue);
  if (loops == st.running->end() || loops->second.empty()) {
    log::warn("no poll loop to kill", {{"queue", queue}});
    return;
  }
  std::uniform_int_distribution<size_t> pick(0, loops->second.size() - 1);
  auto& victim = loops->second[pick(st.rng)];
  log::info("killing poll loop", {{"queue", queue}, {"loop", victim.loop_id}});
  self->send_exit(victim.handle, caf::exit_reason::kill);
}

} // namespace

poll_loops_actor::behavior_type
poll_loops(poll_loops_actor::stateful_pointer<poll_loops_state> self,
           std::map<std::string, poller_setup> setups, lease_keeper_actor registry,
           metrics_ptr stats, uint64_t seed) {
  self->state.rng.seed(seed);
  auto shared_setups = std::make_shared<const std::map<std::string, poller_setup>>(
    std::move(setups));
  self->set_down_handler([=](const caf::down_msg& msg) { forget_loop(self, msg); });
  // Loops are not linked to us, so take them along explicitly.
  self->attach_functor([running = self->state.running](const caf::error&) {
    for (auto& entry : *running)
      for (auto& loop : entry.second)
        caf::anon_send_exit(loop.handle, caf::exit_reason::kill);
  });
  return {
    [=](atom::start, const lease& held) -> caf::result<poller_actor> {
      return start_loop(self, *shared_setups, registry, stats, seed, held);
    },
    [=](atom::drain) -> caf::result<bool> { return drain_all(self, *shared_setups); },
    [=](atom::inject, const std::string& queue) { kill_one(self, queue); },
  };
}

} // namespace ghscale
