#include "actors/token_registry.hpp"

#include "actors/clock.hpp"
#include "actors/ops/log.hpp"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <memory>
#include <utility>

namespace ghscale {

namespace {

using registry_pointer
  = token_registry_actor::stateful_pointer<token_registry_state>;
using time_point = caf::actor_clock::time_point;

/// What the registry was spawned with, shared by its callbacks.
struct registry_context {
  poll_loops_actor loops;
  poll_loops_config cfg;
  timeouts_config timeouts;
  metrics_ptr stats;
};
using context_ptr = std::shared_ptr<const registry_context>;

double seconds(caf::timespan d) {
  return std::chrono::duration<double>(d).count();
}

/// A queue never runs on fewer loops than this, and never on none.
int32_t floor_of(const queue_config& q) {
  return std::max(q.min_loops, 1);
}

/// 128 random bits as hex, from the seeded generator so runs repeat.
std::string new_token(std::mt19937_64& rng) {
  char buf[33];
  std::snprintf(buf, sizeof(buf), "%016" PRIx64 "%016" PRIx64,
                static_cast<uint64_t>(rng()), static_cast<uint64_t>(rng()));
  return buf;
}

std::vector<std::string> tokens_of(registry_pointer self,
                                   const std::string& queue) {
  std::vector<std::string> out;
  for (auto& [token, rec] : self->state.leases)
    if (rec.held.queue == queue)
      out.push_back(token);
  return out;
}

int32_t loops_of(registry_pointer self, const std::string& queue) {
  return static_cast<int32_t>(tokens_of(self, queue).size());
}

void publish_loops(registry_pointer self, const context_ptr& ctx,
                   const std::string& queue) {
  ctx->stats->set("ghscale_poll_loops", {{"queue", queue}},
                  loops_of(self, queue));
}

// -- starting loops ---------------------------------------------------------------

/// The start was answered: watch the loop, and if it replaced one, take the
/// revival time. A lease that moved on meanwhile (revoked, or another loop
/// id) leaves this loop to be fenced at its first heartbeat.
void loop_started(registry_pointer self, const context_ptr& ctx,
                  const lease& held, poller_actor loop) {
  auto& st = self->state;
  auto i = st.leases.find(held.token);
  if (i == st.leases.end() || i->second.held.loop_id != held.loop_id)
    return;
  auto& rec = i->second;
  rec.loop = loop;
  self->monitor(loop);
  log::info("poll loop started", {{"queue", held.queue}, {"loop", held.loop_id}});
  if (!rec.replaced_since)
    return;
  auto revival = seconds(self->clock().now() - *rec.replaced_since);
  rec.replaced_since.reset();
  auto& view = st.queues.at(held.queue).view;
  view.max_revival_seconds = std::max(view.max_revival_seconds, revival);
  ctx->stats->observe("ghscale_loop_revival_seconds", {{"queue", held.queue}},
                      revival);
}

/// Starts a loop for the lease under a fresh loop id, which fences out any
/// loop that held it before.
void start_loop(registry_pointer self, const context_ptr& ctx,
                lease_record& rec) {
  rec.held.loop_id = ++self->state.last_loop_id;
  rec.loop = nullptr;
  rec.start_failed = false;
  rec.last_seen = self->clock().now();
  auto held = rec.held;
  // A start slower than a tick is retried at the tick, under a new loop id.
  self->request(ctx->loops, ctx->cfg.heartbeat, atom::start_v, held)
    .then([=](poller_actor loop) { loop_started(self, ctx, held, loop); },
          [=](const caf::error& err) {
            auto i = self->state.leases.find(held.token);
            if (i == self->state.leases.end()
                || i->second.held.loop_id != held.loop_id)
              return;
            i->second.start_failed = true;
            log::warn("could not start poll loop, retrying at the next tick",
                      {{"queue", held.queue},
                       {"loop", held.loop_id},
                       {"error", self->system().render(err)}});
          });
}

lease add_lease(registry_pointer self, const context_ptr& ctx,
                const std::string& queue) {
  auto token = new_token(self->state.rng);
  auto& rec = self->state.leases[token];
  rec.held = lease{queue, token, 0};
  start_loop(self, ctx, rec);
  publish_loops(self, ctx, queue);
  return rec.held;
}

/// Revokes one lease of the queue at random, never below its floor; its
/// loop learns it at its next heartbeat, after its batch.
bool revoke_one(registry_pointer self, const context_ptr& ctx,
                const queue_leases& q) {
  auto tokens = tokens_of(self, q.config.name);
  if (static_cast<int32_t>(tokens.size()) <= floor_of(q.config))
    return false;
  std::uniform_int_distribution<size_t> pick(0, tokens.size() - 1);
  auto i = self->state.leases.find(tokens[pick(self->state.rng)]);
  log::info("poll loop revoked",
            {{"queue", q.config.name}, {"loop", i->second.held.loop_id}});
  self->state.leases.erase(i);
  publish_loops(self, ctx, q.config.name);
  return true;
}

/// Replaces the loop of a lease that died or went quiet; `since` is its
/// last sign of life.
void revive(registry_pointer self, const context_ptr& ctx, lease_record& rec,
            time_point since, const std::string& why) {
  auto& queue = rec.held.queue;
  ++self->state.queues.at(queue).view.revived;
  ctx->stats->add("ghscale_loops_revived_total", {{"queue", queue}});
  log::info("poll loop revived",
            {{"queue", queue},
             {"loop", rec.held.loop_id},
             {"reason", why},
             {"quiet_ms", to_ms(self->clock().now() - since)}});
  if (!rec.replaced_since)
    rec.replaced_since = since;
  start_loop(self, ctx, rec);
}

void loop_down(registry_pointer self, const context_ptr& ctx,
               const caf::down_msg& msg) {
  auto& st = self->state;
  auto i = std::find_if(st.leases.begin(), st.leases.end(), [&](auto& entry) {
    return entry.second.loop.address() == msg.source;
  });
  // A revoked or fenced loop that stopped, as told.
  if (i == st.leases.end())
    return;
  i->second.loop = nullptr;
  if (st.draining)
    return;
  auto why = msg.reason ? "died: " + self->system().render(msg.reason)
                        : std::string{"stopped while holding its lease"};
  revive(self, ctx, i->second, self->clock().now(), why);
}

// -- heartbeats ---------------------------------------------------------------------

heartbeat_verdict heartbeat(registry_pointer self, const context_ptr& ctx,
                            const lease& held) {
  auto& st = self->state;
  auto i = st.leases.find(held.token);
  auto current = i != st.leases.end() && i->second.held.queue == held.queue
                 && i->second.held.loop_id == held.loop_id;
  if (current) {
    i->second.last_seen = self->clock().now();
    return heartbeat_verdict::keep_going;
  }
  auto q = st.queues.find(held.queue);
  if (q != st.queues.end()) { // a known queue: a bounded label
    ++q->second.view.fenced;
    ctx->stats->add("ghscale_loop_heartbeats_refused_total",
                    {{"queue", held.queue}});
  }
  log::info("poll loop fenced",
            {{"queue", held.queue},
             {"loop", held.loop_id},
             {"reason", i == st.leases.end() ? "lease revoked" : "loop replaced"}});
  return heartbeat_verdict::stop;
}

/// Replaces loops whose lease went quiet, and retries failed starts.
void check_leases(registry_pointer self, const context_ptr& ctx) {
  auto now = self->clock().now();
  for (auto& entry : self->state.leases) {
    auto& rec = entry.second;
    if (rec.start_failed)
      start_loop(self, ctx, rec);
    else if (now - rec.last_seen > ctx->cfg.stale_after)
      revive(self, ctx, rec, rec.last_seen, "no heartbeat");
  }
}

// -- depth and hysteresis ---------------------------------------------------------

/// Loops follow depth as CloudWatch alarms would: at or above the high mark
/// the alarm is on and each sample adds a loop up to the maximum; once depth
/// is back at or below the normal mark the alarm goes OK, and each sample
/// revokes a loop down to the minimum. In between, nothing changes.
void follow_depth(registry_pointer self, const context_ptr& ctx,
                  queue_leases& q) {
  auto& cfg = q.config;
  auto& view = q.view;
  auto depth = view.depth.visible + view.depth.in_flight;
  if (depth >= cfg.scale_up_depth) {
    if (!view.alarm)
      log::info("queue depth alarm", {{"queue", cfg.name}, {"depth", depth}});
    view.alarm = true;
    q.scale_down_armed = false;
    if (loops_of(self, cfg.name) < cfg.max_loops) {
      auto added = add_lease(self, ctx, cfg.name);
      ++view.scaled_up;
      log::info("poll loops scaled up",
                {{"queue", cfg.name}, {"loop", added.loop_id}, {"depth", depth}});
    }
    return;
  }
  if (depth > cfg.scale_down_depth)
    return;
  if (view.alarm) {
    log::info("queue depth back to normal", {{"queue", cfg.name}, {"depth", depth}});
    view.alarm = false;
    q.scale_down_armed = true;
  }
  if (!q.scale_down_armed)
    return;
  if (revoke_one(self, ctx, q))
    ++view.scaled_down;
  q.scale_down_armed = loops_of(self, cfg.name) > floor_of(cfg);
}

void sample(registry_pointer self, const context_ptr& ctx, queue_leases& q) {
  if (!q.depth || q.sampling)
    return;
  q.sampling = true;
  auto name = q.config.name;
  self->request(q.depth, ctx->timeouts.aws_call, atom::depth_v)
    .then(
      [=](const queue_depth& depth) {
        auto& q = self->state.queues.at(name);
        q.sampling = false;
        q.view.depth = depth;
        ctx->stats->set("ghscale_queue_depth",
                        {{"queue", name}, {"kind", "visible"}},
                        static_cast<double>(depth.visible));
        ctx->stats->set("ghscale_queue_depth",
                        {{"queue", name}, {"kind", "in_flight"}},
                        static_cast<double>(depth.in_flight));
        if (!self->state.draining)
          follow_depth(self, ctx, q);
      },
      [=](const caf::error& err) {
        self->state.queues.at(name).sampling = false;
        ctx->stats->add("ghscale_queue_depth_errors_total", {{"queue", name}});
        log::warn("queue depth sample failed",
                  {{"queue", name}, {"error", self->system().render(err)}});
      });
}

void tick(registry_pointer self, const context_ptr& ctx) {
  auto& st = self->state;
  if (st.draining)
    return;
  check_leases(self, ctx);
  auto now = self->clock().now();
  if (now >= st.next_sample) {
    st.next_sample = now + ctx->cfg.sample_every;
    for (auto& entry : st.queues)
      sample(self, ctx, entry.second);
  }
  self->delayed_send(self, ctx->cfg.heartbeat, atom::tick_v);
}

// -- manual scaling, status, drain --------------------------------------------------

caf::expected<queue_leases*> find_queue(registry_pointer self,
                                        const std::string& queue) {
  if (self->state.draining)
    return caf::make_error(errc::shutting_down,
                           "token registry draining: no scaling of queue " + queue);
  auto i = self->state.queues.find(queue);
  if (i == self->state.queues.end())
    return caf::make_error(errc::not_found,
                           "token registry: queue " + queue + " is not polled");
  return &i->second;
}

caf::result<lease> acquire(registry_pointer self, const context_ptr& ctx,
                           const std::string& queue) {
  auto q = find_queue(self, queue);
  if (!q)
    return q.error();
  if (loops_of(self, queue) >= (*q)->config.max_loops)
    return caf::make_error(errc::over_capacity,
                           "token registry: queue " + queue
                             + " already has its maximum of poll loops");
  return add_lease(self, ctx, queue);
}

caf::result<bool> revoke(registry_pointer self, const context_ptr& ctx,
                         const std::string& queue) {
  auto q = find_queue(self, queue);
  if (!q)
    return q.error();
  return revoke_one(self, ctx, **q);
}

registry_status status(registry_pointer self) {
  registry_status out;
  for (auto& [name, q] : self->state.queues) {
    auto view = q.view;
    view.loops = loops_of(self, name);
    out.queues.push_back(std::move(view));
  }
  return out;
}

caf::result<bool> drain(registry_pointer self, const context_ptr& ctx) {
  self->state.draining = true;
  log::info("draining poll loops");
  auto promise = self->make_response_promise<bool>();
  // The loops take up to their drain budget: give their answer time to come.
  self->request(ctx->loops, ctx->timeouts.drain + ctx->cfg.heartbeat,
                atom::drain_v)
    .then([=](bool stopped) mutable { promise.deliver(stopped); },
          [=](const caf::error& err) mutable {
            log::warn("poll loops did not drain",
                      {{"error", self->system().render(err)}});
            promise.deliver(false);
          });
  return promise;
}

} // namespace

token_registry_actor::behavior_type
token_registry(token_registry_actor::stateful_pointer<token_registry_state> self,
               std::vector<queue_config> queues,
               std::map<std::string, queue_depth_actor> depths,
               poll_loops_actor loops, poll_loops_config cfg,
               timeouts_config timeouts, metrics_ptr stats, uint64_t seed) {
  auto& st = self->state;
  st.rng.seed(seed);
  auto ctx = std::make_shared<const registry_context>(
    registry_context{std::move(loops), cfg, timeouts, std::move(stats)});
  self->set_down_handler(
    [=](const caf::down_msg& msg) { loop_down(self, ctx, msg); });
  for (auto& q : queues) {
    auto& rec = st.queues[q.name];
    rec.config = q;
    rec.view.queue = q.name;
    rec.view.min_loops = floor_of(q);
    rec.view.max_loops = q.max_loops;
    if (auto i = depths.find(q.name); i != depths.end())
      rec.depth = i->second;
  }
  for (auto& q : queues)
    for (int32_t i = 0; i < floor_of(q); ++i)
      add_lease(self, ctx, q.name);
  st.next_sample = self->clock().now() + cfg.sample_every;
  self->delayed_send(self, cfg.heartbeat, atom::tick_v);
  return {
    [=](atom::heartbeat, const lease& held) { return heartbeat(self, ctx, held); },
    [=](atom::acquire, const std::string& queue) -> caf::result<lease> {
      return acquire(self, ctx, queue);
    },
    [=](atom::revoke, const std::string& queue) -> caf::result<bool> {
      return revoke(self, ctx, queue);
    },
    [=](atom::status) { return status(self); },
    [=](atom::drain) -> caf::result<bool> { return drain(self, ctx); },
    [=](atom::tick) { tick(self, ctx); },
  };
}

} // namespace ghscale
