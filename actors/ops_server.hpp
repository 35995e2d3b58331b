#pragma once
// The operations endpoint: GitHub webhook ingress, the Prometheus page and
// the health checks, over HTTP or HTTPS (cpp-httplib).
//
// Not an actor: cpp-httplib owns its accept thread and handler threads, and
// its handlers must answer synchronously. So this is a small RAII object
// whose handlers bridge into CAF with a `caf::scoped_actor` and bounded
// request timeouts (GitHub gives up on a delivery after 10 s).
//
// Routes:
//   POST <webhook_path>  verify, then enqueue; 202 only once the queue has
//                        accepted the message, 503 if it failed or timed out
//   GET  /metrics        Prometheus text format 0.0.4
//   GET  /healthz        200 "ok" while the process runs
//   GET  /readyz         200 if every readiness check passes, else 503 and
//                        the list of what failed
//
// Every delivery is counted in ghscale_webhook_deliveries_total{outcome}:
// "accepted", a reason of decide_webhook (transport/webhook.hpp), or
// "queue_failed"; the time to answer goes to ghscale_webhook_seconds.
#include "actors/metrics.hpp"
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "messages/secret.hpp"

#include <caf/all.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace ghscale {

/// One condition of readiness: a name for the /readyz report and a probe
/// that answers an error when the condition does not hold. Probes run on an
/// HTTP handler thread and must bound their own wait.
struct readiness_check {
  std::string name;
  std::function<caf::error()> probe;
};

/// "queue <name>": the queue answers `depth` within `timeout`.
readiness_check queue_reachable(caf::actor_system& sys, std::string name,
                                queue_actor queue, caf::timespan timeout);

/// "supervision": the node answers `status` within `timeout`, is not
/// draining, and every child is running (none is being restarted).
readiness_check supervision_up(caf::actor_system& sys, node_actor node,
                               caf::timespan timeout);

/// "credentials": the AWS credential chain yields credentials within
/// `timeout`.
readiness_check credentials_usable(caf::actor_system& sys,
                                   aws_credentials_actor credentials,
                                   caf::timespan timeout);

struct ops_server_setup {
  server_config cfg;
  /// The webhook secrets (load_webhook_secrets); required with a webhook
  /// queue, since unsigned deliveries are never accepted.
  std::vector<secret_string> secrets;
  /// Where accepted deliveries go (cfg.webhook_queue resolved by the
  /// caller); null: no webhook route, only metrics and health.
  queue_actor webhook_queue;
  /// Checked on every GET /readyz, in parallel. "configuration" is implicit:
  /// the server only runs with a loaded configuration.
  std::vector<readiness_check> readiness;
  /// Bound on waiting for the queue to accept a delivery: well within the
  /// 10 s after which GitHub counts the delivery as failed.
  caf::timespan enqueue_timeout = std::chrono::seconds(5);
};

/// A running server. Destroying it (or stop()) stops accepting, finishes the
/// requests in progress and joins every server thread.
class ops_server {
public:
  struct impl;
  explicit ops_server(std::unique_ptr<impl> x);
  ~ops_server();
  ops_server(const ops_server&) = delete;
  ops_server& operator=(const ops_server&) = delete;

  /// The bound port (the actual one when the configuration says port 0).
  uint16_t port() const;
  /// Idempotent.
  void stop();

private:
  std::unique_ptr<impl> impl_;
};

/// Binds `setup.cfg.listen` ("host:port"; port 0 picks a free one) before
/// returning, then serves on `setup.cfg.threads` handler threads. Errors
/// (`errc::invalid_config`): "server: cannot listen on host:port: why", an
/// unusable TLS certificate or key, a webhook queue without secrets.
caf::expected<std::unique_ptr<ops_server>>
start_ops_server(caf::actor_system& sys, ops_server_setup setup,
                 metrics_ptr stats);

} // namespace ghscale
