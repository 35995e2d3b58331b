#pragma once
// The HTTP engine: libcurl's multi interface driven by one thread of its own.
// Every transfer shares one connection cache (keep-alive, connection reuse),
// at most `max_in_flight` transfers run at once and the rest wait in FIFO
// order, TLS peers are always verified, and each response is bounded in size
// and time. Completions are reported through a callback on the engine thread;
// the http_client actor bridges them into CAF.
#include "messages/types.hpp"

#include <caf/all.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

namespace ghscale {

struct http_engine_options {
  int32_t max_in_flight = 64;        // transfers running at once; more wait
  int32_t max_host_connections = 32; // open connections per host
  std::string ca_bundle;             // PEM file; "" = the system's CA store
  caf::timespan connect_timeout = std::chrono::seconds(5);
};

/// Turns a URL into what an error message may show: scheme, host, port and
/// path, without user info, query string or fragment.
std::string redacted_url(const std::string& url);

class http_engine {
public:
  /// Called on the engine thread, exactly once per submitted request.
  using completion =
    std::function<void(uint64_t id, caf::expected<http_response> result)>;

  http_engine(http_engine_options opts, completion on_done);

  /// Stops the thread; transfers still running or waiting complete with
  /// `errc::shutting_down` before the destructor returns. Called from a
  /// completion callback, it returns at once and they complete right after.
  ~http_engine();

  http_engine(const http_engine&) = delete;
  http_engine& operator=(const http_engine&) = delete;

  /// Queues a request (thread-safe, never blocks on I/O, never rejects).
  /// `id` is the caller's and comes back in the completion.
  void submit(uint64_t id, http_request req);

private:
  struct impl;
  std::shared_ptr<impl> impl_; // shared with the thread

};

} // namespace ghscale
