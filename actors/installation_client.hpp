#pragma once
// The only actor that talks to GitHub for one installation. It caches the
// installation token until `token_refresh_before` its expiry (one refresh at
// a time), queues requests by priority (register a runner, then check a job,
// then clean up), keeps the budget (x-ratelimit-* headers, a concurrency
// limit, at most `writes_per_minute` mutations in any 61 s window), honours
// retry-after, and retries 5xx, 401 (after a refresh) and the transient 404
// right after a token mint with jittered backoff. It also plans: a scaler
// asks how many registrations can start within a window before launching
// runners for them, and the ones it admits are set aside under a ticket.
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "actors/ops/metrics.hpp"
#include "actors/write_window.hpp"

#include <caf/all.hpp>

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <unordered_map>
#include <vector>

namespace ghscale {

/// Completes one public request with GitHub's answer or the final error.
using github_completion = std::function<void(caf::expected<github_response>)>;

/// One public request on its way: queued, in flight, or backing off.
struct github_work {
  github_request request; // its credential is filled in at each send
  request_priority priority = request_priority::cleanup;
  int32_t attempts = 0;         // sends so far
  bool reauthenticated = false; // a 401 already forced a fresh token
  bool replaced_lost = false;   // a 409 already removed a lost registration
  uint64_t token_generation = 0; // of the token it was last sent with
  caf::timespan token_minted_at{0};
  /// The caller stops waiting then: still queued, it fails unsent (0: none).
  caf::timespan deadline{0};
  github_completion done;
};

/// Registrations a scaler was told can start in time, set aside for it.
struct admission_hold {
  int32_t units = 0;       // registrations not arrived yet
  caf::timespan until{0};  // the plan's window ends: the rest are set free
};

struct installation_client_state {
  int64_t installation_id = 0;
  github_app_config app;
  timeouts_config timeouts;
  github_app_actor minter;
  github_api_actor api;
  metrics_ptr stats;
  std::mt19937_64 rng;

  /// Waiting requests, one FIFO per request_priority (lowest value first).
  std::array<std::deque<github_work>, 3> queues;
  /// Requests waiting out a retry backoff, by the time they may go again.
  std::multimap<caf::timespan, github_work> backing_off;
  /// Requests GitHub has not answered yet, by send serial.
  std::unordered_map<uint64_t, github_work> in_flight;
  uint64_t next_serial = 0;

  /// Runner group ids by "org/group name", looked up once.
  std::map<std::string, int64_t> runner_groups;
  /// Registrations waiting for a runner group lookup in flight.
  std::map<std::string, std::vector<std::function<void(caf::expected<int64_t>)>>>
    runner_group_waiters;

  /// The installation token and when it stops being handed out.
  secret_string token;
  caf::timespan token_usable_until{0};
  caf::timespan token_minted_at{0};
  uint64_t token_generation = 0;
  bool minting = false;
  int32_t mint_failures = 0; // consecutive
  caf::timespan next_mint_at{0};

  /// The last x-ratelimit-* headers seen.
  rate_limit rate;
  /// No request starts before this (retry-after, exhausted primary limit).
  caf::timespan paused_until{0};
  /// Start times of the mutations of the trailing window.
  write_window writes{0, caf::timespan{0}};
  /// Registrations admitted and not arrived yet, by ticket.
  std::map<uint64_t, admission_hold> admissions;
  uint64_t next_ticket = 1;
  /// Draining: queued requests failed, new ones refused.
  bool draining = false;
  /// The earliest `flush` timer armed, if any.
  std::optional<caf::timespan> flush_at;

  int64_t requests_sent = 0;
  int64_t retries = 0;
  int64_t token_mints = 0;

  static inline const char* name = "installation_client";
};

installation_client_actor::behavior_type
installation_client(
  installation_client_actor::stateful_pointer<installation_client_state> self,
  int64_t installation_id, github_app_config app, timeouts_config timeouts,
  github_app_actor minter, github_api_actor api, metrics_ptr stats,
  uint64_t seed);

} // namespace ghscale
