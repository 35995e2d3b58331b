#pragma once
// Wall-clock time at the edge of the process. Actors run on the actor clock
// (virtual in tests and simulations); the wire speaks wall time (SigV4 dates,
// JWT claims, token expiries, x-ratelimit-reset). A `clock_bridge` taken at
// the moment a response arrives converts one into the other.
#include <caf/timespan.hpp>

#include <string>
#include <string_view>

#include <caf/expected.hpp>

namespace ghscale {

/// Time since the Unix epoch, read from the system clock.
caf::timespan wall_now();

/// Both clocks read at the same moment.
struct clock_bridge {
  caf::timespan wall_now{0};  // since the Unix epoch
  caf::timespan actor_now{0}; // since the actor clock's epoch
  /// The actor-clock time of a wall-clock instant.
  caf::timespan to_actor(caf::timespan wall) const noexcept {
    return actor_now + (wall - wall_now);
  }
  /// The wall-clock (Unix) time of an actor-clock instant.
  caf::timespan to_wall(caf::timespan actor) const noexcept {
    return wall_now + (actor - actor_now);
  }
};

/// "2026-11-22T13:31:09Z" or with fractional seconds / a numeric offset
/// (RFC 3339, ISO 8601 as AWS and GitHub write it), to time since the epoch.
caf::expected<caf::timespan> parse_rfc3339(std::string_view text);
/// An RFC 7231 HTTP-date ("Sun, 22 Nov 2026 13:31:09 GMT").
caf::expected<caf::timespan> parse_http_date(std::string_view text);
/// "2026-11-22T13:31:09Z", as GitHub writes times.
std::string rfc3339(caf::timespan since_epoch);
/// "20261122T133109Z", as SigV4 writes x-amz-date.
std::string amz_date(caf::timespan since_epoch);

} // namespace ghscale
