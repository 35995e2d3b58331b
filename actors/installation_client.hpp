#pragma once
// The only actor that talks to GitHub for one installation. It caches the
// installation token until `token_refresh_before` its expiry (one refresh at
// a time), queues requests by priority (register a runner, then check a job,
// then clean up), keeps the budget (x-ratelimit-* headers, a concurrency
// limit, at most `writes_per_minute` mutations in any 60 s window), honours
// retry-after, and retries 5xx, 401 (after a refresh) and the transient 404
// right after a token mint with jittered backoff.
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "actors/metrics.hpp"

#include <caf/all.hpp>

namespace ghscale {

struct installation_client_state {
  static inline const char* name = "installation_client";
};

installation_client_actor::behavior_type
installation_client(
  installation_client_actor::stateful_pointer<installation_client_state> self,
  int64_t installation_id, github_app_config app, timeouts_config timeouts,
  github_app_actor minter, github_api_actor api, metrics_ptr stats,
  uint64_t seed);

} // namespace ghscale
