#pragma once
// The HTTP engine's actor side: requests arrive as messages, each becomes a
// transfer on the engine thread, and the engine reports back with
// `http_done`, which answers the requester. Destroying the state stops the
// engine; requests still open then fail with `errc::shutting_down`.
#include "messages/actors.hpp"
#include "transport/http_engine.hpp"

#include <caf/all.hpp>

#include <cstdint>
#include <memory>
#include <unordered_map>

namespace ghscale {

struct http_client_state {
  /// Requests handed to the engine, by the id the engine reports back.
  std::unordered_map<uint64_t, caf::typed_response_promise<http_response>> open;
  uint64_t next_id = 1;
  std::unique_ptr<http_engine> engine;

  http_client_state() = default;
  http_client_state(const http_client_state&) = delete;
  http_client_state& operator=(const http_client_state&) = delete;
  /// Stops the engine, then fails the requests it left open.
  ~http_client_state();

  static inline const char* name = "http_client";
};

http_engine_actor::behavior_type
http_client(http_engine_actor::stateful_pointer<http_client_state> self,
            http_engine_options opts);

} // namespace ghscale
