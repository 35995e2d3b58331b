#include "actors/node.hpp"

#include "actors/fleet_launcher.hpp"
#include "actors/job_retry.hpp"
#include "actors/ops/log.hpp"
#include "actors/poll_loops.hpp"
#include "actors/poller.hpp"
#include "actors/reaper.hpp"
#include "actors/runner_ledger.hpp"
#include "actors/scaler.hpp"
#include "actors/token_registry.hpp"
#include "actors/supervisor.hpp"


namespace ghscale {

namespace {

// -- the node actor ------------------------------------------------------------

struct node_state {
  caf::actor tree; // the root supervisor
  token_registry_actor registry; // drains the poll loops
  /// Give back what they hold on a drain: the scalers (jobs waiting for
  /// capacity or budget) and the GitHub Apps (queued registrations).
  std::vector<drain_actor> holders;
  bool draining = false;
  /// Everything drained within the budget (the drain's answer).
  bool drained_in_time = true;
  /// Scalers, Apps and the poll loops still draining.
  size_t drains_left = 0;
  std::vector<caf::typed_response_promise<bool>> drain_waiters;
  static inline const char* name = "node";
};

node_actor::behavior_type node(node_actor::stateful_pointer<node_state> self,
                               caf::actor tree, token_registry_actor registry,
                               std::vector<drain_actor> holders,
                               caf::timespan give_back_after,
                               caf::timespan drain_timeout) {
  self->state.tree = tree;
  self->state.registry = std::move(registry);
  self->state.holders = std::move(holders);
  self->monitor(tree);
  // If the node itself goes away, the tree goes with it.
  self->attach_functor([tree] {
    caf::anon_send_exit(tree, caf::exit_reason::user_shutdown);
  });
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& st = self->state;
    if (st.draining) {
      for (auto& rp : st.drain_waiters)
        rp.deliver(st.drained_in_time);
      st.drain_waiters.clear();
      log::info("stopped", {{"reason", st.drained_in_time ? "drained"
                                                           : "drain budget spent"}});
      self->quit(caf::exit_reason::user_shutdown);
      return;
    }
    // The root supervisor only exits on its own when restart intensity was
    // exceeded: the process must end non-zero so systemd restarts it.
    log::error("supervision tree gave up",
               {{"reason", self->system().render(msg.reason)}});
    self->quit(msg.reason ? msg.reason
                          : caf::make_error(errc::unavailable, "supervisor exited"));
  });
  auto stop_tree = [=] {
    log::info("draining", {{"step", "stopping actors"}});
    self->send_exit(self->state.tree, caf::exit_reason::user_shutdown);
  };
  return {
    [=](atom::drain) -> caf::result<bool> {
      auto& st = self->state;
      auto rp = self->make_response_promise<bool>();
      st.drain_waiters.push_back(rp);
      if (st.draining)
        return rp;
      st.draining = true;
      log::info("draining", {{"step", "stopping poll loops"}});
      // Loops stop receiving and keep what they hold hidden until its
      // outcome comes: scalers give back the jobs still waiting, GitHub Apps
      // fail the registrations still queued (the launcher terminates those
      // instances and their jobs go back too), decisions under way finish.
      // Whatever is unfinished goes back to its queue. The tree stops once
      // all of them are done or the budget is spent.
      st.drains_left = st.holders.size() + 1;
      auto one_done = [=] {
        if (--self->state.drains_left == 0)
          stop_tree();
      };
      // A child still starting (or restarting) is not running: there is
      // nothing of it to drain (what a crashed one held goes back to its
      // queue after the visibility timeout). Any other failure is a drain
      // over its budget.
      auto not_drained = [=](const char* what, const caf::error& err) {
        if (err == errc::unavailable) {
          log::info("not running: nothing to drain", {{"error", self->system().render(err)}});
        } else {
          self->state.drained_in_time = false;
          log::warn(what, {{"error", self->system().render(err)}});
        }
        one_done();
      };
      for (auto& holder : st.holders)
        self->request(holder, drain_timeout, atom::drain_v, give_back_after)
          .then([=](bool) { one_done(); },
                [=](caf::error& err) {
                  not_drained("a scaler or App did not drain in time", err);
                });
      self->request(st.registry, drain_timeout, atom::drain_v)
        .then([=](bool) { one_done(); },
              [=](caf::error& err) { not_drained("poll loops did not drain in time", err); });
      return rp;
    },
    [=](atom::status) -> caf::result<node_status> {
      auto rp = self->make_response_promise<node_status>();
      self->request(self->state.tree, drain_timeout, atom::status_v)
        .then(
          [=](node_status status) mutable {
            status.draining = self->state.draining;
            rp.deliver(std::move(status));
          },
          [=](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [=](atom::inject, const std::string& child) {
      log::warn("chaos", {{"crash", child}});
      caf::anon_send(self->state.tree, atom::inject_v, child);
    },
  };
}

caf::error missing(const std::string& what) {
  return caf::make_error(errc::invalid_config,
                         "no backend for " + what
                           + " (remote backends need the transport clients)");
}

/// Every backend the configuration needs must be present in `b`.
caf::error check_backends(const config& cfg, const backends& b) {
  if (!b.ec2)
    return missing("EC2 (aws.backend)");
  if (!b.ssm)
    return missing("SSM (aws.backend)");
  for (auto& pool : cfg.pools) {
    auto queue = cfg.find_queue(pool.queue);
    if (queue == nullptr || b.queues.count(pool.queue) == 0)
      return missing("queue '" + pool.queue + "' of pool '" + pool.name + "'");
    if (!queue->dead_letter.empty() && b.queues.count(queue->dead_letter) == 0)
      return missing("dead-letter queue '" + queue->dead_letter + "'");
    if (b.github.count(pool.github_app) == 0 || b.jwt.count(pool.github_app) == 0)
      return missing("GitHub App '" + pool.github_app + "'");
  }
  return caf::none;
}

} // namespace

caf::expected<node_handles> spawn_node(caf::actor_system& sys,
                                       const config& cfg, const backends& b,
                                       metrics_ptr stats, uint64_t seed) {
  if (auto err = check_backends(cfg, b))
    return err;
  const auto& timeouts = cfg.timeouts;
  node_handles h;
  // Start order is dependency order; shutdown runs in reverse, so pollers
  // stop first and ledgers last.
  std::vector<child_spec> children;
  for (auto& pool : cfg.pools)
    children.push_back(make_child(sys, restart_type::permanent, "ledger/" + pool.name,
                                  h.ledgers[pool.name], runner_ledger, pool,
                                  timeouts, b.ec2, stats));
  for (auto& app : cfg.github_apps) {
    if (b.github.count(app.name) == 0)
      continue; // not used by any pool (check_backends passed)
    children.push_back(make_child(sys, restart_type::permanent, "github_app/" + app.name,
                                  h.apps[app.name], github_app, app, timeouts,
                                  b.jwt.at(app.name), b.github.at(app.name),
                                  stats, seed + children.size()));
  }
  std::map<std::string, launch_recorder_actor> recorders;
  for (auto& [name, ledger] : h.ledgers)
    recorders.emplace(name, ledger);
  children.push_back(make_child(sys, restart_type::permanent, "fleet_launcher", h.launcher,
                                fleet_launcher, cfg.pools, cfg.aws, timeouts,
                                b.ec2, b.ssm, h.apps, std::move(recorders), stats,
                                seed + children.size()));
  if (cfg.job_retry.enabled) {
    std::map<std::string, job_retry_route> routes;
    for (auto& pool : cfg.pools)
      routes[pool.name] = job_retry_route{h.ledgers.at(pool.name),
                                          b.queues.at(pool.queue),
                                          h.apps.at(pool.github_app)};
    children.push_back(make_child(sys, restart_type::permanent, "job_retry",
                                  h.job_retry, job_retry, cfg.job_retry,
                                  std::move(routes), timeouts, stats,
                                  seed + children.size()));
  }
  for (auto& pool : cfg.pools)
    children.push_back(make_child(sys, restart_type::permanent, "scaler/" + pool.name,
                                  h.scalers[pool.name], scaler, pool,
                                  cfg.scaler, cfg.retry, timeouts,
                                  h.ledgers.at(pool.name), h.launcher,
                                  h.apps.at(pool.github_app), h.job_retry,
                                  b.queues.at(pool.queue), stats,
                                  seed + children.size()));
  for (auto& pool : cfg.pools)
    children.push_back(make_child(sys, restart_type::permanent, "reaper/" + pool.name,
                                  h.reapers[pool.name], reaper, pool, b.ec2,
                                  ledger_reconciler_actor{h.ledgers.at(pool.name)},
                                  h.apps.at(pool.github_app), timeouts, b.wall,
                                  stats));
  // Poll loops last: they feed everything above. The registry and the loop
  // supervisor need each other's handles, so the registry's relay comes first.
  poller_routes routes;
  routes.pools = cfg.pools;
  routes.scalers = h.scalers;
  for (auto& [name, ledger] : h.ledgers)
    routes.ledgers[name] = ledger;
  std::map<std::string, poller_setup> setups;
  std::vector<queue_config> polled;
  std::map<std::string, queue_depth_actor> depths;
  for (auto& pool : cfg.pools) {
    if (setups.count(pool.queue) > 0)
      continue;
    auto& queue = *cfg.find_queue(pool.queue);
    queue_actor dead_letter;
    if (!queue.dead_letter.empty())
      dead_letter = b.queues.at(queue.dead_letter);
    setups[queue.name] = poller_setup{queue, b.queues.at(queue.name), dead_letter,
                                      routes, cfg.retry, timeouts, cfg.poll_loops};
    polled.push_back(queue);
    depths[queue.name] = b.queues.at(queue.name);
  }
  // What goes back to a queue on a drain stays hidden until every long poll
  // still out has returned: a draining loop would receive it again, and
  // each receive counts towards the dead-letter queue.
  caf::timespan longest_poll{0};
  for (auto& queue : polled)
    longest_poll = std::max(longest_poll, queue.wait_time);
  auto registry_relay = spawn_relay(sys, "token_registry");
  h.registry = caf::actor_cast<token_registry_actor>(registry_relay);
  children.push_back(make_child(sys, restart_type::permanent, "poll_loops", h.loops,
                                poll_loops, std::move(setups),
                                lease_keeper_actor{h.registry}, stats,
                                seed + children.size()));
  children.push_back(make_child_behind(registry_relay, restart_type::permanent,
                                       "token_registry", token_registry,
                                       std::move(polled), std::move(depths), h.loops,
                                       cfg.poll_loops, timeouts, stats,
                                       seed + children.size()));
  auto tree = spawn_supervisor(sys, "ghscale", std::move(children),
                               supervisor_policy::from(cfg.supervision, seed, stats));
  std::vector<drain_actor> holders;
  for (auto& [name, scaler] : h.scalers)
    holders.emplace_back(scaler);
  for (auto& [name, app] : h.apps)
    holders.emplace_back(app);
  h.node = sys.spawn(node, tree, h.registry, std::move(holders),
                     longest_poll + std::chrono::seconds(1), timeouts.drain);
  log::info("started", {{"pools", static_cast<int64_t>(cfg.pools.size())}});
  return h;
}

} // namespace ghscale
