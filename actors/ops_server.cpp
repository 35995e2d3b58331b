#include "actors/ops_server.hpp"

#include "actors/log.hpp"
#include "transport/prometheus.hpp"
#include "transport/webhook.hpp"

#include "transport/httplib.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <future>
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
  std::vector<readiness_check> readiness;
  caf::timespan enqueue_timeout;
  metrics_ptr stats;
};

using context_ptr = std::shared_ptr<const context>;

void count_delivery(const context& ctx, const std::string& outcome) {
  ctx.stats->add("ghscale_webhook_deliveries_total", {{"outcome", outcome}});
}

/// Sends the accepted delivery's message; an error unless the queue took it.
caf::error enqueue(const context& ctx, const std::string& body) {
  auto res = ask<batch_result>(ctx.sys, ctx.webhook_queue, ctx.enqueue_timeout,
                               atom::enqueue_v,
                               std::vector<outgoing_message>{{body, {}}});
  if (!res)
    return res.error();
  if (!res->failed.empty()) {
    const auto& entry = res->failed.front();
    return caf::make_error(errc::backend_failure,
                           entry.code + ": " + entry.message);
  }
  if (res->succeeded.empty())
    return caf::make_error(errc::backend_failure, "queue confirmed nothing");
  return caf::none;
}

/// Accepted deliveries are routine (debug); ignored ones are GitHub's normal
/// traffic (info); refused ones need an operator's eye (warn).
void log_delivery(const webhook_decision& d, const httplib::Request& req) {
  auto lvl = d.message        ? log::level::debug
             : d.status < 300 ? log::level::info
                              : log::level::warn;
  auto msg = d.message        ? "webhook delivery accepted"
             : d.status < 300 ? "webhook delivery ignored"
                              : "webhook delivery refused";
  if (!d.event) { // not verified or not parsed: nothing of it to trust
    log::write(lvl, msg, {{"outcome", d.outcome}, {"status", d.status},
                          {"remote", req.remote_addr}});
    return;
  }
  auto& ev = *d.event;
  log::write(lvl, msg,
             {{"outcome", d.outcome},
              {"status", d.status},
              {"delivery", req.get_header_value("X-GitHub-Delivery")},
              {"action", to_string(ev.action)},
              {"repository", ev.repository.full_name()},
              {"job", to_string(ev.key)}});
}

webhook_request to_webhook_request(const httplib::Request& req) {
  webhook_request out;
  out.method = req.method;
  for (const auto& [name, value] : req.headers)
    out.headers.push_back(http_header{name, value});
  out.body = req.body;
  return out;
}

void handle_webhook(const context& ctx, const httplib::Request& req,
                    httplib::Response& res) {
  auto started = ctx.sys.clock().now();
  auto decision = decide_webhook(ctx.webhook, to_webhook_request(req));
  if (decision.message) {
    if (auto err = enqueue(ctx, *decision.message)) {
      log::error("webhook delivery not enqueued",
                 {{"queue", ctx.cfg.webhook_queue}, {"error", describe(err)}});
      decision.status = 503;
      decision.outcome = "queue_failed";
      decision.response = "queue unavailable, redeliver later";
      decision.message.reset();
    }
  }
  log_delivery(decision, req);
  count_delivery(ctx, decision.outcome);
  std::chrono::duration<double> took = ctx.sys.clock().now() - started;
  ctx.stats->observe("ghscale_webhook_seconds", {}, took.count());
  res.status = decision.status;
  res.set_content(decision.response + "\n", plain_text);
}

/// cpp-httplib refuses a body over the payload limit itself (413, empty
/// body) before any handler runs: count those deliveries here.
httplib::Server::HandlerResponse
handle_refused_body(const context& ctx, const httplib::Request& req,
                    httplib::Response& res) {
  if (res.status != 413 || !res.body.empty() || req.path != ctx.cfg.webhook_path)
    return httplib::Server::HandlerResponse::Unhandled;
  count_delivery(ctx, "too_large");
  log::warn("webhook delivery refused",
            {{"outcome", "too_large"}, {"status", res.status},
             {"remote", req.remote_addr}});
  res.set_content("body over " + std::to_string(ctx.webhook.max_body_bytes)
                    + " bytes\n",
                  plain_text);
  return httplib::Server::HandlerResponse::Handled;
}

/// Runs every check at once (each bounds its own wait) and reports each.
void handle_readiness(const context& ctx, httplib::Response& res) {
  std::vector<std::future<caf::error>> results;
  for (const auto& check : ctx.readiness)
    results.push_back(std::async(std::launch::async, check.probe));
  std::string report = "ok configuration\n";
  bool ready = true;
  for (size_t i = 0; i < results.size(); ++i) {
    auto err = results[i].get();
    if (err) {
      ready = false;
      report += "failed " + ctx.readiness[i].name + ": " + describe(err) + "\n";
    } else {
      report += "ok " + ctx.readiness[i].name + "\n";
    }
  }
  res.status = ready ? 200 : 503;
  res.set_content(report, plain_text);
}

/// cpp-httplib matches routes as regular expressions; the configured path
/// is a literal.
std::string literal_pattern(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (std::string_view{"\\^$.|?*+()[]{}"}.find(c) != std::string_view::npos)
      out += '\\';
    out += c;
  }
  return out;
}

void add_routes(httplib::Server& http, context_ptr ctx) {
  if (ctx->webhook_queue) {
    http.Post(literal_pattern(ctx->cfg.webhook_path),
              [ctx](const httplib::Request& req, httplib::Response& res) {
                handle_webhook(*ctx, req, res);
              });
    http.set_error_handler(httplib::Server::HandlerWithResponse{
      [ctx](const httplib::Request& req, httplib::Response& res) {
        return handle_refused_body(*ctx, req, res);
      }});
  }
  http.Get("/metrics", [ctx](const httplib::Request&, httplib::Response& res) {
    res.set_content(render_prometheus(*ctx->stats), prometheus_content_type);
  });
  http.Get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("ok\n", plain_text);
  });
  http.Get("/readyz", [ctx](const httplib::Request&, httplib::Response& res) {
    handle_readiness(*ctx, res);
  });
}

struct listen_address {
  std::string host;
  int port = 0;
};

/// "host:port" or "[v6]:port".
caf::expected<listen_address> parse_listen(const std::string& text) {
  auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    return config_error("server: listen must be host:port, got '" + text + "'");
  listen_address out;
  out.host = text.substr(0, colon);
  if (out.host.size() > 2 && out.host.front() == '[' && out.host.back() == ']')
    out.host = out.host.substr(1, out.host.size() - 2);
  auto digits = text.substr(colon + 1);
  if (digits.size() > 5
      || !std::all_of(digits.begin(), digits.end(),
                      [](char c) { return c >= '0' && c <= '9'; })
      || std::stoi(digits) > 65535)
    return config_error("server: bad port in listen '" + text + "'");
  out.port = std::stoi(digits);
  return out;
}

caf::expected<std::unique_ptr<httplib::Server>>
make_http_server(const server_config& cfg) {
  if (cfg.tls_cert_file.empty() != cfg.tls_key_file.empty())
    return config_error("server: tls_cert_file and tls_key_file go together");
  if (cfg.tls_cert_file.empty())
    return std::make_unique<httplib::Server>();
  auto tls = std::make_unique<httplib::SSLServer>(cfg.tls_cert_file.c_str(),
                                                  cfg.tls_key_file.c_str());
  if (!tls->is_valid())
    return config_error("server: cannot use TLS certificate "
                        + cfg.tls_cert_file + " with key " + cfg.tls_key_file);
  return std::unique_ptr<httplib::Server>{std::move(tls)};
}

/// Binds before returning, so a taken port fails the start, not a thread.
caf::expected<uint16_t> bind_listener(httplib::Server& http, const std::string& listen) {
  auto addr = parse_listen(listen);
  if (!addr)
    return addr.error();
  errno = 0;
  int port = addr->port;
  bool bound = port == 0 ? (port = http.bind_to_any_port(addr->host)) > 0
                         : http.bind_to_port(addr->host, port);
  if (!bound)
    return config_error("server: cannot listen on " + listen + ": "
                        + (errno != 0 ? std::strerror(errno) : "bind failed"));
  return static_cast<uint16_t>(port);
}

} // namespace

struct ops_server::impl {
  std::unique_ptr<httplib::Server> http;
  std::thread loop;
  uint16_t port = 0;
};

ops_server::ops_server(std::unique_ptr<impl> x) : impl_(std::move(x)) {
}

ops_server::~ops_server() {
  stop();
}

uint16_t ops_server::port() const {
  return impl_->port;
}

void ops_server::stop() {
  if (!impl_->loop.joinable())
    return;
  impl_->http->stop();
  impl_->loop.join();
  log::info("ops server stopped", {{"port", static_cast<int64_t>(impl_->port)}});
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

caf::expected<std::unique_ptr<ops_server>>
start_ops_server(caf::actor_system& sys, ops_server_setup setup,
                 metrics_ptr stats) {
  if (setup.webhook_queue && setup.secrets.empty())
    return config_error("server: the webhook needs at least one secret");
  auto http = make_http_server(setup.cfg);
  if (!http)
    return http.error();
  auto& server = **http;
  auto threads = static_cast<size_t>(std::max(setup.cfg.threads, 1));
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  // Headers and body leave in separate writes: without TCP_NODELAY, Nagle
  // and delayed ACKs add 40 ms to every response.
  server.set_tcp_nodelay(true);
  // SO_REUSEADDR for a quick restart over TIME_WAIT connections, but not
  // cpp-httplib's default SO_REUSEPORT: a second instance on the same port
  // must fail to start, not silently share the deliveries.
  server.set_socket_options([](socket_t sock) {
    int on = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  });
  server.set_payload_max_length(
    static_cast<size_t>(std::max<int64_t>(setup.cfg.max_body_bytes, 0)));
  // cpp-httplib closes a keep-alive connection after 5 requests by default:
  // under a burst the reconnects overflow its listen backlog of 5 and wait
  // a second for SYN retries. Idle connections still close after the read
  // timeout.
  server.set_keep_alive_max_count(100000);
  auto ctx = std::make_shared<const context>(context{
    sys, setup.cfg, make_webhook_settings(setup.cfg, std::move(setup.secrets)),
    setup.webhook_queue, std::move(setup.readiness), setup.enqueue_timeout,
    std::move(stats)});
  add_routes(server, ctx);
  auto port = bind_listener(server, setup.cfg.listen);
  if (!port)
    return port.error();
  auto x = std::make_unique<ops_server::impl>();
  x->http = std::move(*http);
  x->port = *port;
  auto ended = std::make_shared<std::atomic<bool>>(false);
  x->loop = std::thread([http = x->http.get(), ended] {
    http->listen_after_bind();
    *ended = true;
  });
  // stop() is a no-op until the accept loop runs: wait for it to start.
  while (!x->http->is_running() && !*ended)
    std::this_thread::yield();
  if (*ended) {
    x->loop.join();
    return config_error("server: cannot serve on " + setup.cfg.listen);
  }
  log::info("ops server listening",
            {{"listen", setup.cfg.listen},
             {"port", static_cast<int64_t>(*port)},
             {"tls", !setup.cfg.tls_cert_file.empty()},
             {"webhook", setup.webhook_queue ? setup.cfg.webhook_path : ""}});
  return std::make_unique<ops_server>(std::move(x));
}

} // namespace ghscale
