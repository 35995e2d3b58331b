#pragma once
// The operations endpoint: GitHub webhook ingress, the Prometheus page and
// the health checks, over HTTP or HTTPS, on the bounded server of
// transport/http_server (every limit a client could exhaust is bounded:
// header count and bytes, request line, head and body deadlines,
// connections in all and per client, keep-alive).
//
// Not an actor: the server owns its I/O threads. Nothing blocks them: a
// delivery is enqueued by the delivery relay (actors/ops/delivery_relay), which
// answers when the queue has it, and /readyz runs its probes on one worker thread, at most once a
// second however often it is asked.
//
// Routes:
//   POST <webhook_path>  verify, then enqueue; 202 only once the queue has
//                        accepted the message, 503 if it failed or timed out
//                        (other methods: 405)
//   GET  /metrics        Prometheus text format 0.0.4
//   GET  /healthz        200 "ok" while the process runs
//   GET  /readyz         200 if every readiness check passes, else 503 and
//                        the list of what failed
//
// Every delivery is counted in ghscale_webhook_deliveries_total{outcome}:
// "accepted", a reason of decide_webhook (transport/webhook.hpp), or
// "queue_failed"; the time to answer goes to ghscale_webhook_seconds.
// Clients the server refused or cut off are counted in
// ghscale_http_refused_total{reason}.
#include "actors/ops/metrics.hpp"
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "messages/secret.hpp"
#include "transport/http_server.hpp"

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
  /// A /readyz report this young answers further requests without probing
  /// again: however often it is asked, the probes run at most this often.
  caf::timespan readiness_fresh_for = std::chrono::seconds(1);
};

/// A running server. Destroying it (or stop()) stops accepting, gives the
/// requests in progress a moment to be answered, closes every connection
/// and joins every server thread.
class ops_server {
public:
  struct impl;
  explicit ops_server(std::unique_ptr<impl> x);
  ~ops_server();
  ops_server(const ops_server&) = delete;
  ops_server& operator=(const ops_server&) = delete;

  /// The bound port (the actual one when the configuration says port 0).
  uint16_t port() const;
  /// Idempotent; answers still awaited get up to `grace`.
  void stop(caf::timespan grace = std::chrono::seconds(2));

private:
  std::unique_ptr<impl> impl_;
};

/// Binds `cfg.listen` ("host:port"; port 0 picks a free one) with the
/// limits and TLS files of `cfg`, and serves nothing yet: a second instance
/// fails here, before it opens anything else. Errors
/// (`errc::invalid_config`): "server: cannot listen on host:port: why", an
/// unusable TLS certificate or key.
caf::expected<std::unique_ptr<http_server>> bind_ops_listener(const server_config& cfg);

/// Serves the routes on `listener` (bound by bind_ops_listener for
/// `setup.cfg`) on `setup.cfg.threads` I/O threads. Fails
/// (`errc::invalid_config`) for a webhook queue without secrets.
caf::expected<std::unique_ptr<ops_server>>
start_ops_server(caf::actor_system& sys, ops_server_setup setup,
                 std::unique_ptr<http_server> listener, metrics_ptr stats);

/// Both at once: binds `setup.cfg.listen`, then serves.
caf::expected<std::unique_ptr<ops_server>>
start_ops_server(caf::actor_system& sys, ops_server_setup setup, metrics_ptr stats);

} // namespace ghscale
