#include "actors/node.hpp"

#include "actors/embedded_queue.hpp"
#include "actors/fleet_launcher.hpp"
#include "actors/log.hpp"
#include "actors/poller.hpp"
#include "actors/runner_ledger.hpp"
#include "actors/scaler.hpp"
#include "actors/sim_cloud.hpp"
#include "actors/sim_github.hpp"
#include "actors/supervisor.hpp"
#include "transport/digest.hpp"

#include <functional>
#include <set>

namespace ghscale {

namespace {

/// The App JWT for the simulated GitHub: the claims GitHub requires (iat
/// backdated 60 s, exp under 10 minutes, iss = App id), unsigned, because the
/// simulation checks claims, not signatures. Real Apps get an RS256 signer.
jwt_minter unsigned_jwt(int64_t app_id) {
  return [app_id](caf::timespan now) -> caf::expected<secret_string> {
    auto iat = std::chrono::duration_cast<std::chrono::seconds>(now).count() - 60;
    auto header = base64url(R"({"alg":"none","typ":"JWT"})");
    auto claims = base64url("{\"iat\":" + std::to_string(iat) + ",\"exp\":"
                            + std::to_string(iat + 600) + ",\"iss\":"
                            + std::to_string(app_id) + "}");
    return secret_string{header + "." + claims + "."};
  };
}

// -- the node actor ------------------------------------------------------------

struct node_state {
  caf::actor tree; // the root supervisor
  std::vector<poller_actor> pollers;
  bool draining = false;
  size_t pollers_left = 0;
  std::vector<caf::typed_response_promise<bool>> drain_waiters;
  static inline const char* name = "node";
};

node_actor::behavior_type node(node_actor::stateful_pointer<node_state> self,
                               caf::actor tree,
                               std::vector<poller_actor> pollers,
                               caf::timespan drain_timeout) {
  self->state.tree = tree;
  self->state.pollers = std::move(pollers);
  self->monitor(tree);
  // If the node itself goes away, the tree goes with it.
  self->attach_functor([tree] {
    caf::anon_send_exit(tree, caf::exit_reason::user_shutdown);
  });
  self->set_down_handler([=](caf::down_msg& msg) {
    auto& st = self->state;
    if (st.draining) {
      for (auto& rp : st.drain_waiters)
        rp.deliver(true);
      st.drain_waiters.clear();
      log::info("stopped", {{"reason", "drained"}});
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
      st.pollers_left = st.pollers.size();
      log::info("draining", {{"step", "stopping pollers"},
                             {"pollers", static_cast<int64_t>(st.pollers_left)}});
      if (st.pollers_left == 0)
        stop_tree();
      // Pollers stop receiving, finish their batch in flight, then answer;
      // whatever is unfinished stays on its queue.
      auto poller_done = [=] {
        if (--self->state.pollers_left == 0)
          stop_tree();
      };
      for (auto& p : st.pollers)
        self->request(p, drain_timeout, atom::drain_v)
          .then([=](bool) { poller_done(); },
                [=](caf::error& err) {
                  log::warn("poller did not drain in time",
                            {{"error", self->system().render(err)}});
                  poller_done();
                });
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

caf::expected<embedded_world>
spawn_embedded_backends(caf::actor_system& sys, const config& cfg,
                        metrics_ptr stats) {
  embedded_world world;
  auto& queues = world.wiring.queues;
  // A queue's dead-letter queue is spawned before it.
  std::function<caf::error(const queue_config&, int)> spawn_queue;
  spawn_queue = [&](const queue_config& q, int depth) -> caf::error {
    if (queues.count(q.name) > 0 || q.backend != backend_kind::embedded)
      return caf::none;
    if (depth > static_cast<int>(cfg.queues.size()))
      return caf::make_error(errc::invalid_config,
                             "dead-letter queues of '" + q.name + "' form a cycle");
    queue_actor dead_letter;
    if (!q.dead_letter.empty()) {
      auto dlq = cfg.find_queue(q.dead_letter);
      if (dlq == nullptr)
        return caf::make_error(errc::invalid_config,
                               "queue '" + q.name + "': unknown dead_letter '"
                                 + q.dead_letter + "'");
      if (auto err = spawn_queue(*dlq, depth + 1))
        return err;
      dead_letter = queues[q.dead_letter];
    }
    queues[q.name] = sys.spawn(embedded_queue, q, dead_letter, stats);
    return caf::none;
  };
  for (auto& q : cfg.queues)
    if (auto err = spawn_queue(q, 0))
      return err;
  world.github = sys.spawn(sim_github, cfg.simulation, stats);
  world.cloud = sys.spawn(sim_cloud, cfg.simulation, cfg.aws.parameter_prefix,
                          world.github, stats);
  if (!cfg.pools.empty() && queues.count(cfg.pools.front().queue) > 0)
    caf::anon_send(world.github, atom::connect_v,
                   queues.at(cfg.pools.front().queue), world.cloud);
  if (cfg.aws.backend == backend_kind::embedded) {
    world.wiring.ec2 = world.cloud;
    world.wiring.ssm = world.cloud;
  }
  for (auto& app : cfg.github_apps) {
    if (app.backend != backend_kind::embedded)
      continue;
    world.wiring.github[app.name] = world.github;
    world.wiring.jwt[app.name] = unsigned_jwt(app.app_id);
  }
  return world;
}

caf::expected<node_handles> spawn_node(caf::actor_system& sys,
                                       const config& cfg, const backends& b,
                                       metrics_ptr stats) {
  if (auto err = check_backends(cfg, b))
    return err;
  auto seed = cfg.simulation.seed;
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
  children.push_back(make_child(sys, restart_type::permanent, "fleet_launcher", h.launcher,
                                fleet_launcher, cfg.pools, cfg.aws, timeouts,
                                b.ec2, b.ssm, h.apps, stats,
                                seed + children.size()));
  for (auto& pool : cfg.pools)
    children.push_back(make_child(sys, restart_type::permanent, "scaler/" + pool.name,
                                  h.scalers[pool.name], scaler, pool,
                                  cfg.scaler, cfg.retry, timeouts,
                                  h.ledgers.at(pool.name), h.launcher,
                                  h.apps.at(pool.github_app), stats,
                                  seed + children.size()));
  poller_routes routes;
  routes.pools = cfg.pools;
  routes.scalers = h.scalers;
  for (auto& [name, ledger] : h.ledgers)
    routes.ledgers[name] = ledger;
  std::set<std::string> polled;
  for (auto& pool : cfg.pools) {
    if (!polled.insert(pool.queue).second)
      continue;
    auto& queue = *cfg.find_queue(pool.queue);
    queue_actor dead_letter;
    if (!queue.dead_letter.empty())
      dead_letter = b.queues.at(queue.dead_letter);
    for (int32_t loop = 0; loop < queue.min_loops; ++loop) {
      h.pollers.emplace_back();
      // Transient: a poller that stopped after a drain stays stopped.
      children.push_back(make_child(
        sys, restart_type::transient, "poller/" + queue.name + "/" + std::to_string(loop),
        h.pollers.back(), poller, queue, b.queues.at(queue.name), dead_letter,
        routes, cfg.retry, timeouts, stats, seed + children.size()));
    }
  }
  auto tree = spawn_supervisor(sys, "ghscale", std::move(children),
                               supervisor_policy::from(cfg.supervision, seed));
  h.node = sys.spawn(node, tree, h.pollers, timeouts.drain);
  log::info("started", {{"pools", static_cast<int64_t>(cfg.pools.size())},
                        {"pollers", static_cast<int64_t>(h.pollers.size())}});
  return h;
}

} // namespace ghscale
