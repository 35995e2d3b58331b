#pragma once
// GitHub's REST API over the HTTP engine: the real github_api_actor. One call
// in, one HTTP exchange out, GitHub's answer back as a github_response; the
// budget (rate limits, retries, priorities) is the installation client's.
#include "actors/ops/metrics.hpp"
#include "messages/actors.hpp"
#include "transport/github_rest.hpp"

#include <caf/all.hpp>

namespace ghscale {

struct github_rest_client_state {
  github_endpoint endpoint;
  http_actor http;
  caf::timespan timeout{0}; // of one whole HTTP exchange
  metrics_ptr stats;
  static inline const char* name = "github_rest_client";
};

github_api_actor::behavior_type
github_rest_client(github_api_actor::stateful_pointer<github_rest_client_state> self,
                   github_endpoint ep, http_actor http, caf::timespan timeout,
                   metrics_ptr stats);

} // namespace ghscale
