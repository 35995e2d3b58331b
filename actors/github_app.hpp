#pragma once
// One per GitHub App: holds the App credential (JWT minting), mints
// installation tokens and spawns one installation_client per installation,
// lazily, monitoring each and re-spawning it on next use if it died.
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "actors/ops/metrics.hpp"
#include <functional>

#include <caf/all.hpp>

#include <cstdint>
#include <string>
#include <unordered_map>

namespace ghscale {

struct github_app_state {
  /// One live client per installation id; linked, so they go with the App.
  std::unordered_map<int64_t, installation_client_actor> clients;
  /// The App JWT, reused until `jwt_reuse_until`.
  secret_string jwt;
  caf::timespan jwt_reuse_until{0};
  /// Installation ids looked up by target (org, or owner/repo).
  std::unordered_map<std::string, int64_t> installations;
  /// Draining: every client drains, those spawned later too.
  bool draining = false;
  static inline const char* name = "github_app";
};

/// Produces an App JWT valid from `now` (actor-clock time). Issue
/// "transport" supplies the RS256 signer; the embedded backend one that the
/// simulated GitHub accepts.
using jwt_minter = std::function<caf::expected<secret_string>(caf::timespan now)>;

github_app_actor::behavior_type
github_app(github_app_actor::stateful_pointer<github_app_state> self,
           github_app_config app, timeouts_config timeouts, jwt_minter jwt,
           github_api_actor api, metrics_ptr stats, uint64_t seed);

} // namespace ghscale
