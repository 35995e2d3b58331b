#pragma once
// Wall-clock time at the edge of the process. Actors run on the actor clock
// (virtual in tests and simulations); the wire speaks wall time (SigV4 dates,
// JWT claims, token expiries, x-ratelimit-reset). A `clock_bridge` taken at
// the moment a response arrives converts one into the other.
#include <caf/timespan.hpp>

#include <chrono>
#include <cstdint>

#include <string>
#include <string_view>

#include <caf/expected.hpp>

namespace ghscale {

/// Time since the Unix epoch, read from the system clock.
caf::timespan wall_now();

/// How far from either clock's epoch an instant from outside may lie: about
/// 146 years. Times read from the wire are clamped to it, so that adding
/// and subtracting two of them never overflows a timespan (int64
/// nanoseconds, about 292 years each way).
constexpr caf::timespan far_instant{int64_t{1} << 62};

/// `t` clamped to [-far_instant, far_instant].
constexpr caf::timespan clamp_far(caf::timespan t) noexcept {
  return t > far_instant ? far_instant : t < -far_instant ? -far_instant : t;
}

/// A count of `Unit` (seconds, milliseconds) read from the wire as a
/// timespan, clamped (a reset in the year 5138 stays far in the future).
template <class Unit>
constexpr caf::timespan clamped(int64_t count) noexcept {
  constexpr auto limit = std::chrono::duration_cast<Unit>(far_instant).count();
  return count > limit    ? far_instant
         : count < -limit ? -far_instant
                          : std::chrono::duration_cast<caf::timespan>(Unit{count});
}

/// Both clocks read at the same moment.
struct clock_bridge {
  caf::timespan wall_now{0};  // since the Unix epoch
  caf::timespan actor_now{0}; // since the actor clock's epoch
  /// The actor-clock time of a wall-clock instant (clamped).
  caf::timespan to_actor(caf::timespan wall) const noexcept {
    return clamp_far(actor_now + (clamp_far(wall) - wall_now));
  }
  /// The wall-clock (Unix) time of an actor-clock instant (clamped).
  caf::timespan to_wall(caf::timespan actor) const noexcept {
    return clamp_far(wall_now + (clamp_far(actor) - actor_now));
  }
};

/// "2026-11-22T13:31:09Z" or with fractional seconds / a numeric offset
/// (RFC 3339, ISO 8601 as AWS and GitHub write it), to time since the epoch.
/// Both parsers refuse years outside 1900..2200.
caf::expected<caf::timespan> parse_rfc3339(std::string_view text);
/// An RFC 7231 HTTP-date ("Sun, 22 Nov 2026 13:31:09 GMT").
caf::expected<caf::timespan> parse_http_date(std::string_view text);
/// "2026-11-22T13:31:09Z", as GitHub writes times.
std::string rfc3339(caf::timespan since_epoch);
/// "20261122T133109Z", as SigV4 writes x-amz-date.
std::string amz_date(caf::timespan since_epoch);

} // namespace ghscale
