#include "actors/clients/remote_backends.hpp"

#include "actors/clients/aws_call.hpp"
#include "actors/clients/aws_credentials_provider.hpp"
#include "actors/clients/ec2_client.hpp"
#include "actors/clients/github_rest_client.hpp"
#include "actors/clients/http_client.hpp"
#include "actors/ops/log.hpp"
#include "actors/clients/sqs_queue.hpp"
#include "actors/clients/ssm_client.hpp"
#include "actors/supervisor.hpp"
#include "transport/aws_credentials.hpp"
#include "transport/aws_protocol.hpp"
#include "transport/files.hpp"
#include "transport/github_jwt.hpp"
#include "transport/github_rest.hpp"
#include "transport/http_engine.hpp"

#include <algorithm>

namespace ghscale {

namespace {

bool is_remote(backend_kind kind) {
  return kind == backend_kind::remote;
}

/// SQS or EC2 + SSM: anything that needs AWS credentials apart from an App
/// key in SSM.
bool uses_aws_services(const config& cfg) {
  return is_remote(cfg.aws.backend)
         || std::any_of(cfg.queues.begin(), cfg.queues.end(),
                        [](auto& q) { return is_remote(q.backend); });
}

bool any_remote(const config& cfg) {
  return uses_aws_services(cfg)
         || std::any_of(cfg.github_apps.begin(), cfg.github_apps.end(),
                        [](auto& app) { return is_remote(app.backend); });
}

bool needs_aws(const config& cfg) {
  return uses_aws_services(cfg)
         || std::any_of(cfg.github_apps.begin(), cfg.github_apps.end(), [](auto& app) {
              return is_remote(app.backend) && !app.private_key_parameter.empty();
            });
}

caf::expected<secret_string> read_key_file(const github_app_config& app) {
  auto pem = read_file(app.private_key_file);
  if (!pem)
    return caf::make_error(errc::invalid_config,
                           "cannot read private_key_file " + app.private_key_file);
  return secret_string{std::move(*pem)};
}

/// The PEM from SSM, fetched once at startup through the SSM client.
caf::expected<secret_string> read_key_parameter(caf::actor_system& sys,
                                                const github_app_config& app,
                                                const ssm_client_actor& ssm,
                                                caf::timespan timeout) {
  caf::scoped_actor self{sys};
  caf::expected<secret_string> result = secret_string{};
  self->request(ssm, timeout, atom::get_param_v, app.private_key_parameter)
    .receive([&](secret_string& pem) { result = std::move(pem); },
             [&](caf::error& err) {
               result = caf::make_error(errc::invalid_config,
                                        "private_key_parameter "
                                          + app.private_key_parameter + ": "
                                          + context_of(err));
             });
  return result;
}

/// Waits for the supervisor's first answer: it has started every child and
/// pointed their relays at them by then, so no caller sees "restarting".
caf::error wait_until_started(caf::actor_system& sys, const caf::actor& tree,
                              caf::timespan timeout) {
  caf::scoped_actor self{sys};
  caf::error result;
  self->request(tree, timeout, atom::status_v)
    .receive([](const node_status&) {},
             [&](caf::error& err) { result = std::move(err); });
  return result;
}

http_engine_options engine_options(const http_config& http) {
  http_engine_options opts;
  opts.max_in_flight = http.max_in_flight;
  opts.max_host_connections = http.max_host_connections;
  opts.ca_bundle = http.ca_bundle;
  opts.connect_timeout = http.connect_timeout;
  return opts;
}

} // namespace

void merge_backends(backends& into, const backends& extra) {
  for (auto& [name, q] : extra.queues)
    into.queues[name] = q;
  if (extra.ec2)
    into.ec2 = extra.ec2;
  if (extra.ssm)
    into.ssm = extra.ssm;
  for (auto& [name, api] : extra.github)
    into.github[name] = api;
  for (auto& [name, jwt] : extra.jwt)
    into.jwt[name] = jwt;
}

caf::expected<remote_world> spawn_remote_backends(caf::actor_system& sys,
                                                  const config& cfg,
                                                  metrics_ptr stats,
                                                  uint64_t seed) {
  remote_world world;
  if (!any_remote(cfg))
    return world;
  std::vector<child_spec> children;
  http_engine_actor http;
  children.push_back(make_child(sys, restart_type::permanent, "http", http,
                                http_client, engine_options(cfg.http)));
  aws_call_options calls;
  calls.call_timeout = cfg.timeouts.aws_call;
  ssm_client_actor ssm;
  if (needs_aws(cfg)) {
    aws_credentials_options creds_opts;
    creds_opts.profile = cfg.aws.profile;
    auto& creds = world.credentials;
    children.push_back(make_child(sys, restart_type::permanent, "aws_credentials",
                                  creds, aws_credentials_provider,
                                  process_environment(), http_actor{http},
                                  creds_opts));
    for (auto& q : cfg.queues) {
      if (q.backend != backend_kind::remote)
        continue;
      queue_actor queue;
      children.push_back(make_child(sys, restart_type::permanent, "sqs/" + q.name,
                                    queue, sqs_queue, q,
                                    service_endpoint(cfg.aws, "sqs"), creds,
                                    http_actor{http}, calls, stats,
                                    seed + children.size()));
      world.wiring.queues[q.name] = queue;
    }
    ec2_actor ec2;
    children.push_back(make_child(sys, restart_type::permanent, "ec2", ec2,
                                  ec2_client, service_endpoint(cfg.aws, "ec2"),
                                  creds, http_actor{http}, calls, stats,
                                  seed + children.size()));
    children.push_back(make_child(sys, restart_type::permanent, "ssm", ssm,
                                  ssm_client, service_endpoint(cfg.aws, "ssm"),
                                  creds, http_actor{http}, calls,
                                  cfg.aws.kms_key_id, cfg.aws.ssm_throughput, stats,
                                  seed + children.size()));
    if (cfg.aws.backend == backend_kind::remote) {
      world.wiring.ec2 = ec2;
      world.wiring.ssm = ssm;
    }
  }
  for (auto& app : cfg.github_apps) {
    if (app.backend != backend_kind::remote)
      continue;
    github_endpoint ep;
    ep.base_url = app.base_url;
    github_api_actor api;
    children.push_back(make_child(sys, restart_type::permanent, "github/" + app.name,
                                  api, github_rest_client, ep, http_actor{http},
                                  app.request_timeout, stats));
    world.wiring.github[app.name] = api;
  }
  world.tree = spawn_supervisor(sys, "backends", std::move(children),
                                supervisor_policy::from(cfg.supervision, seed, stats));
  if (auto err = wait_until_started(sys, world.tree, cfg.timeouts.aws_call)) {
    caf::anon_send_exit(world.tree, caf::exit_reason::user_shutdown);
    return err;
  }
  // The App keys: read now, so that a missing or bad key stops the start.
  for (auto& app : cfg.github_apps) {
    if (app.backend != backend_kind::remote)
      continue;
    auto pem = app.private_key_file.empty()
                 ? read_key_parameter(sys, app, ssm, cfg.timeouts.aws_call)
                 : read_key_file(app);
    auto key = pem ? load_app_private_key(*pem) : caf::expected<app_private_key>{pem.error()};
    if (!key) {
      caf::anon_send_exit(world.tree, caf::exit_reason::user_shutdown);
      return caf::make_error(errc::invalid_config,
                             "GitHub App '" + app.name + "': " + context_of(key.error()));
    }
    world.wiring.jwt[app.name] = rs256_jwt_minter(*key, app.app_id);
    log::info("github app key loaded",
              {{"app", app.name},
               {"source", app.private_key_file.empty() ? "ssm" : "file"}});
  }
  return world;
}

} // namespace ghscale
