#pragma once
// GitHub's REST API on the wire: a github_request becomes an http_request
// (path, query, headers, JSON body) and an http_response becomes a
// github_response (status, rate-limit headers, the fields the operation
// produces). Pure functions, so every byte is testable without a network.
#include "messages/types.hpp"
#include "transport/wall_clock.hpp"

#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include <string>

namespace ghscale {

/// Where GitHub's API lives and how ghscale introduces itself.
struct github_endpoint {
  /// github.com; GitHub Enterprise Server: "https://HOST/api/v3".
  std::string base_url = "https://api.github.com";
  std::string user_agent = "ghscale";
  std::string api_version = "2022-11-28";
};

/// The HTTP request for `req`, with Accept, X-GitHub-Api-Version, User-Agent
/// and `Authorization: Bearer <req.credential>`. Organization or repository
/// scope follows `req.target.org_level()`; runner groups always belong to
/// the owner (an organization). Precondition: github_request_problem(req)
/// is empty (it throws otherwise: sending such a request is a bug).
http_request build_github_request(const github_endpoint& ep,
                                  const github_request& req,
                                  caf::timespan timeout);

/// Why `req` cannot be sent at all (a caller's mistake), or an empty error.
caf::error github_request_problem(const github_request& req);

/// The request's path and query, as error messages name the call.
std::string github_path(const github_request& req);

/// Reads GitHub's answer to `req`. Any status is a response; for status >=
/// 400 `message` carries GitHub's error text (truncated). A 2xx whose body
/// lacks a field the operation needs is `errc::backend_failure` naming the
/// field. Wall-clock instants (token expiry, rate-limit reset) are mapped to
/// the actor clock with `clocks`, taken when the response arrived.
caf::expected<github_response> parse_github_response(const github_request& req,
                                                     const http_response& r,
                                                     const clock_bridge& clocks);

} // namespace ghscale
