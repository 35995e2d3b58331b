#pragma once
// An HTTP/1.1 (and HTTPS) server that one client cannot knock over: every
// resource an unauthenticated client controls is bounded.
//
//   request line            `max_request_line` bytes (method, target and
//                           version), else 414
//   header fields           `max_headers` of them in `max_header_bytes`
//                           (names, values, separators), else 431
//   body                    `max_body_bytes`, else 413 (before reading it)
//   time for the head       `head_timeout` from the connection (or from the
//                           first byte of a kept-alive connection's next
//                           request), else 408
//   time for the body       `body_timeout` once the head is in, else 408
//   idle keep-alive         `keep_alive_timeout`, then closed
//   TLS handshake           `head_timeout`
//   connections             `max_connections` in all, `max_connections_per_client`
//                           per client address; more are closed at once
//
// I/O runs on its own threads (Boost.Beast on an io_context), one strand per
// connection: a slow client costs a connection slot and its buffers, never a
// thread. Handlers answer asynchronously, from any thread, so a handler that
// waits (for a queue, say) holds no thread either. Not an actor: it lives
// beside the actor system, and its callers bridge into CAF.
#include "messages/types.hpp"

#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace ghscale {

struct http_limits {
  size_t max_request_line = 8 * 1024;
  size_t max_headers = 100;
  size_t max_header_bytes = 16 * 1024;
  uint64_t max_body_bytes = 1024 * 1024;
  caf::timespan head_timeout = std::chrono::seconds(10);
  caf::timespan body_timeout = std::chrono::seconds(10);
  caf::timespan keep_alive_timeout = std::chrono::seconds(15);
  size_t max_connections = 512;
  size_t max_connections_per_client = 64;
};

/// "host:port" or "[v6]:port", port 0..65535 (0: any free port).
struct listen_address {
  std::string host;
  uint16_t port = 0;
};
caf::expected<listen_address> parse_listen(const std::string& text);

/// One request as the server read it: headers in arrival order, except
/// that a repeated field follows the earlier fields of its name (names as
/// sent; compare them case-insensitively), the client's address.
struct served_request {
  std::string method;
  std::string target;
  std::vector<http_header> headers;
  std::string body;
  std::string client;
};

struct served_response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
  std::vector<http_header> headers;
};

/// Answers one request; call it once, from any thread (later calls and
/// calls after the server stopped do nothing).
using http_respond = std::function<void(served_response)>;
/// Called on a server thread for every complete request; must not block.
using http_handler = std::function<void(served_request, http_respond)>;
/// Told why the server refused or cut a client: "too_many_connections",
/// "too_many_from_client", "head_timeout", "body_timeout",
/// "request_line_too_long", "headers_too_large", "body_too_large",
/// "bad_request", "tls_handshake". For metrics; never blocks.
using http_refusal_sink = std::function<void(std::string_view reason)>;

struct http_server_options {
  std::string listen;        // "host:port"
  std::string tls_cert_file; // HTTPS when both are set
  std::string tls_key_file;
  http_limits limits;
  size_t threads = 2;
};

class http_server {
public:
  struct core;

  /// Binds (connections wait in the backlog until `serve`). Fails with
  /// errc::invalid_config naming the address (taken, unknown) or the TLS
  /// file that cannot be used.
  static caf::expected<std::unique_ptr<http_server>>
  bind(const http_server_options& options);

  /// Serves on `options.threads` threads; once.
  void serve(http_handler handler, http_refusal_sink refused);

  explicit http_server(std::shared_ptr<core> x);
  ~http_server();

  http_server(const http_server&) = delete;
  http_server& operator=(const http_server&) = delete;

  uint16_t port() const;

  /// Stops accepting and closes every connection that is not waiting for
  /// its handler's answer; those get up to `grace` to be answered, then
  /// everything is closed and the server threads are joined.
  void stop(caf::timespan grace);

  /// Connections open now (for tests and metrics).
  size_t connections() const;

private:
  std::shared_ptr<core> core_;
};

} // namespace ghscale
