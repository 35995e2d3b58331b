#include "actors/ops/ops_server.hpp"

#include "actors/ops/delivery_relay.hpp"
#include "actors/ops/log.hpp"
#include "transport/prometheus.hpp"
#include "transport/webhook.hpp"

#include "transport/http_server.hpp"

#include <algorithm>
#include <chrono>
#include <future>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <utility>

namespace ghscale {

namespace {

constexpr const char* plain_text = "text/plain; charset=utf-8";

caf::error config_error(std::string what) {
  return caf::make_error(errc::invalid_config, std::move(what));
}

/// One blocking request from a non-actor thread, bounded by `timeout`.
template <class T, class Handle, class... Ts>
caf::expected<T> ask(caf::actor_system& sys, const Handle& dest,
                     caf::timespan timeout, Ts&&... xs) {
  caf::scoped_actor self{sys, true};
  caf::expected<T> out{caf::sec::request_timeout};
  self->request(dest, timeout, std::forward<Ts>(xs)...)
    .receive([&](T& x) { out = std::move(x); },
             [&](caf::error& err) { out = std::move(err); });
  return out;
}

/// What the handlers share; lives as long as the server's routes.
struct context {
  caf::actor_system& sys;
  server_config cfg;
  webhook_settings webhook;
  queue_actor webhook_queue;
  metrics_ptr stats;
};

using context_ptr = std::shared_ptr<const context>;

void count_delivery(const context& ctx, const std::string& outcome) {
  ctx.stats->add("ghscale_webhook_deliveries_total", {{"outcome", outcome}});
}

/// Accepted deliveries are routine (debug); ignored ones are GitHub's normal
/// traffic (info); refused ones need an operator's eye (warn).
void log_delivery(const webhook_decision& d, const served_request& req) {
  auto lvl = d.message        ? log::level::debug
             : d.status < 300 ? log::level::info
                              : log::level::warn;
  auto msg = d.message        ? "webhook delivery accepted"
             : d.status < 300 ? "webhook delivery ignored"
                              : "webhook delivery refused";
  if (!d.event) { // not verified or not parsed: nothing of it to trust
    log::write(lvl, msg, {{"outcome", d.outcome}, {"status", d.status},
                          {"remote", req.client}});
    return;
  }
  auto& ev = *d.event;
  auto delivery = find_header(req.headers, "X-GitHub-Delivery");
  log::write(lvl, msg,
             {{"outcome", d.outcome},
              {"status", d.status},
              {"delivery", delivery != nullptr ? *delivery : ""},
              {"action", to_string(ev.action)},
              {"repository", ev.repository.full_name()},
              {"job", to_string(ev.key)}});
}

served_response text(int status, std::string body) {
  served_response res;
  res.status = status;
  res.body = std::move(body) + "\n";
  return res;
}

/// Answers a delivery once it is decided, and counts it.
void finish_delivery(const context_ptr& ctx, webhook_decision decision,
                     const served_request& req, caf::actor_clock::time_point started,
                     const http_respond& respond) {
  log_delivery(decision, req);
  count_delivery(*ctx, decision.outcome);
  std::chrono::duration<double> took = ctx->sys.clock().now() - started;
  ctx->stats->observe("ghscale_webhook_seconds", {}, took.count());
  auto res = text(decision.status, decision.response);
  if (decision.status == 405)
    res.headers.push_back({"Allow", "POST"});
  respond(std::move(res));
}

/// Decides a delivery; an accepted one is answered 202 only once the queue
/// has it (the relay waits for that, so no server thread does).
void handle_webhook(const context_ptr& ctx, const delivery_relay_actor& relay,
                    served_request req, const http_respond& respond) {
  auto started = ctx->sys.clock().now();
  webhook_request delivery{req.method, req.headers, std::move(req.body)};
  auto decision = decide_webhook(ctx->webhook, delivery);
  if (!decision.message) {
    finish_delivery(ctx, std::move(decision), req, started, respond);
    return;
  }
  auto body = std::move(*decision.message);
  auto done = [ctx, decision = std::move(decision), req = std::move(req), started,
               respond](const caf::error& err) mutable {
    if (err) {
      log::error("webhook delivery not enqueued",
                 {{"queue", ctx->cfg.webhook_queue}, {"error", describe(err)}});
      decision.status = 503;
      decision.outcome = "queue_failed";
      decision.response = "queue unavailable, redeliver later";
      decision.message.reset();
    }
    finish_delivery(ctx, std::move(decision), req, started, respond);
  };
  caf::anon_send(relay, atom::enqueue_v,
                 std::make_shared<relayed_delivery>(
                   relayed_delivery{std::move(body), std::move(done)}));
}

} // namespace

/// /readyz runs every probe at once on a worker thread of its own, one run
/// at a time, and a fresh report answers further requests.
class readiness_runner {
public:
  readiness_runner(std::vector<readiness_check> checks, caf::timespan fresh_for)
    : checks_(std::move(checks)), fresh_for_(fresh_for) {}

  ~readiness_runner() {
    std::unique_lock<std::mutex> guard{mtx_};
    if (worker_.joinable()) {
      auto worker = std::move(worker_);
      guard.unlock();
      worker.join();
    }
  }

  void ask(http_respond respond) {
    std::unique_lock<std::mutex> guard{mtx_};
    if (report_ && std::chrono::steady_clock::now() - reported_at_ < fresh_for_) {
      auto res = *report_;
      guard.unlock();
      respond(std::move(res));
      return;
    }
    waiting_.push_back(std::move(respond));
    if (running_)
      return;
    running_ = true;
    if (worker_.joinable())
      worker_.join(); // the previous run is over: it reset running_
    worker_ = std::thread([this] { run(); });
  }

private:
  void run() {
    std::vector<std::future<caf::error>> results;
    for (const auto& check : checks_)
      results.push_back(std::async(std::launch::async, check.probe));
    std::string report = "ok configuration\n";
    bool ready = true;
    for (size_t i = 0; i < results.size(); ++i) {
      auto err = results[i].get();
      report += (err ? "failed " : "ok ") + checks_[i].name
                + (err ? ": " + describe(err) : std::string{}) + "\n";
      ready = ready && !err;
    }
    served_response res;
    res.status = ready ? 200 : 503;
    res.body = std::move(report);
    std::vector<http_respond> waiting;
    {
      std::lock_guard<std::mutex> guard{mtx_};
      report_ = res;
      reported_at_ = std::chrono::steady_clock::now();
      waiting = std::move(waiting_);
      waiting_.clear();
      running_ = false;
    }
    for (auto& respond : waiting)
      respond(res);
  }

  std::vector<readiness_check> checks_;
  caf::timespan fresh_for_;
  std::mutex mtx_;
  std::thread worker_;
  bool running_ = false;
  std::vector<http_respond> waiting_;
  std::optional<served_response> report_;
  std::chrono::steady_clock::time_point reported_at_;
};

namespace {

/// The path of a request target, without its query.
std::string_view path_of(const std::string& target) {
  return std::string_view{target}.substr(0, target.find('?'));
}

void route(const context_ptr& ctx, const delivery_relay_actor& relay,
           readiness_runner& readiness, served_request req,
           const http_respond& respond) {
  auto path = path_of(req.target);
  if (ctx->webhook_queue && path == ctx->cfg.webhook_path) {
    handle_webhook(ctx, relay, std::move(req), respond);
    return;
  }
  bool known = path == "/metrics" || path == "/healthz" || path == "/readyz";
  if (!known) {
    respond(text(404, "not found"));
    return;
  }
  if (req.method != "GET") {
    auto res = text(405, "only GET");
    res.headers.push_back({"Allow", "GET"});
    respond(std::move(res));
    return;
  }
  if (path == "/metrics") {
    served_response res;
    res.content_type = prometheus_content_type;
    res.body = render_prometheus(ctx->stats->snapshot());
    respond(std::move(res));
  } else if (path == "/healthz") {
    respond(text(200, "ok"));
  } else {
    readiness.ask(respond);
  }
}

http_limits limits_of(const server_config& cfg) {
  http_limits out;
  out.max_request_line = static_cast<size_t>(cfg.max_request_line);
  out.max_headers = static_cast<size_t>(cfg.max_headers);
  out.max_header_bytes = static_cast<size_t>(cfg.max_header_bytes);
  out.max_body_bytes = static_cast<uint64_t>(std::max<int64_t>(cfg.max_body_bytes, 0));
  out.head_timeout = cfg.head_timeout;
  out.body_timeout = cfg.body_timeout;
  out.keep_alive_timeout = cfg.keep_alive_timeout;
  out.max_connections = static_cast<size_t>(cfg.max_connections);
  out.max_connections_per_client = static_cast<size_t>(cfg.max_connections_per_client);
  return out;
}

} // namespace

struct ops_server::impl {
  std::unique_ptr<readiness_runner> readiness;
  std::unique_ptr<http_server> http;
  delivery_relay_actor relay;
};

ops_server::ops_server(std::unique_ptr<impl> x) : impl_(std::move(x)) {
}

ops_server::~ops_server() {
  stop();
}

uint16_t ops_server::port() const {
  return impl_->http ? impl_->http->port() : 0;
}

void ops_server::stop(caf::timespan grace) {
  if (!impl_->http)
    return;
  auto port = impl_->http->port();
  impl_->http->stop(grace);
  impl_->http.reset();
  impl_->readiness.reset();
  if (impl_->relay)
    caf::anon_send_exit(impl_->relay, caf::exit_reason::user_shutdown);
  log::info("ops server stopped", {{"port", static_cast<int64_t>(port)}});
}

readiness_check queue_reachable(caf::actor_system& sys, std::string name,
                                queue_actor queue, caf::timespan timeout) {
  return {"queue " + name, [&sys, queue, timeout]() -> caf::error {
            auto res = ask<queue_depth>(sys, queue, timeout, atom::depth_v);
            return res ? caf::none : res.error();
          }};
}

readiness_check supervision_up(caf::actor_system& sys, node_actor node,
                               caf::timespan timeout) {
  return {"supervision", [&sys, node, timeout]() -> caf::error {
            auto res = ask<node_status>(sys, node, timeout, atom::status_v);
            if (!res)
              return res.error();
            if (res->draining)
              return caf::make_error(errc::shutting_down, "node is draining");
            std::string down;
            for (const auto& child : res->children)
              if (!child.running)
                down += (down.empty() ? "" : ", ") + child.name;
            if (!down.empty())
              return caf::make_error(errc::unavailable, "not running: " + down);
            return caf::none;
          }};
}

readiness_check credentials_usable(caf::actor_system& sys,
                                   aws_credentials_actor credentials,
                                   caf::timespan timeout) {
  return {"credentials", [&sys, credentials, timeout]() -> caf::error {
            // Only success matters: the credentials themselves stay here.
            auto res = ask<aws_credentials>(sys, credentials, timeout,
                                            atom::credentials_v);
            return res ? caf::none : res.error();
          }};
}

caf::expected<std::unique_ptr<http_server>> bind_ops_listener(const server_config& cfg) {
  http_server_options options;
  options.listen = cfg.listen;
  options.tls_cert_file = cfg.tls_cert_file;
  options.tls_key_file = cfg.tls_key_file;
  options.limits = limits_of(cfg);
  options.threads = static_cast<size_t>(std::max(cfg.threads, 1));
  return http_server::bind(options);
}

caf::expected<std::unique_ptr<ops_server>>
start_ops_server(caf::actor_system& sys, ops_server_setup setup,
                 std::unique_ptr<http_server> listener, metrics_ptr stats) {
  if (setup.webhook_queue && setup.secrets.empty())
    return config_error("server: the webhook needs at least one secret");
  auto ctx = std::make_shared<const context>(context{
    sys, setup.cfg, make_webhook_settings(setup.cfg, std::move(setup.secrets)),
    setup.webhook_queue, stats});
  auto x = std::make_unique<ops_server::impl>();
  x->readiness = std::make_unique<readiness_runner>(std::move(setup.readiness),
                                                    setup.readiness_fresh_for);
  auto* readiness = x->readiness.get();
  x->http = std::move(listener);
  if (setup.webhook_queue)
    x->relay = sys.spawn(delivery_relay, setup.webhook_queue, setup.enqueue_timeout);
  x->http->serve(
    [ctx, readiness, relay = x->relay](served_request req, http_respond respond) {
      route(ctx, relay, *readiness, std::move(req), respond);
    },
    [stats](std::string_view reason) {
      stats->add("ghscale_http_refused_total", {{"reason", std::string{reason}}});
    });
  log::info("ops server listening",
            {{"listen", setup.cfg.listen},
             {"port", static_cast<int64_t>(x->http->port())},
             {"tls", !setup.cfg.tls_cert_file.empty()},
             {"webhook", setup.webhook_queue ? setup.cfg.webhook_path : ""}});
  return std::make_unique<ops_server>(std::move(x));
}

caf::expected<std::unique_ptr<ops_server>>
start_ops_server(caf::actor_system& sys, ops_server_setup setup, metrics_ptr stats) {
  auto listener = bind_ops_listener(setup.cfg);
  if (!listener)
    return listener.error();
  return start_ops_server(sys, std::move(setup), std::move(*listener), std::move(stats));
}

} // namespace ghscale
