#include "actors/embedded/embedded_backends.hpp"

#include "actors/embedded/embedded_queue.hpp"
#include "transport/digest.hpp"

#include <chrono>
#include <functional>
#include <string>

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
    auto queue = spawn_embedded_queue(sys, q, dead_letter, stats);
    if (!queue)
      return queue.error();
    queues[q.name] = *queue;
    return caf::none;
  };
  for (auto& q : cfg.queues)
    if (auto err = spawn_queue(q, 0))
      return err;
  world.github = sys.spawn(sim_github, cfg.simulation, stats);
  world.cloud = sys.spawn(sim_cloud, cfg.simulation, cfg.aws.parameter_prefix,
                          world.github, stats);
  // Webhooks and EC2's events (spot interruption warnings) arrive on the
  // first pool's queue.
  if (!cfg.pools.empty() && queues.count(cfg.pools.front().queue) > 0) {
    auto& events = queues.at(cfg.pools.front().queue);
    caf::anon_send(world.github, atom::connect_v, events, world.cloud);
    caf::anon_send(world.cloud, atom::connect_v, events);
  }
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

} // namespace ghscale
