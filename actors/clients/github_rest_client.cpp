#include "actors/clients/github_rest_client.hpp"

#include "actors/clock.hpp"
#include "actors/ops/log.hpp"
#include "transport/wall_clock.hpp"

#include <chrono>
#include <string>
#include <utility>

namespace ghscale {

namespace {

using client_ptr = github_api_actor::stateful_pointer<github_rest_client_state>;

/// The engine enforces the exchange's timeout itself and answers with an
/// error naming the URL; the actor-level timeout only catches an engine that
/// never answers, so it waits a little longer.
constexpr caf::timespan engine_grace = std::chrono::seconds(5);

/// "2xx", "4xx", ...: bounded labels, whatever status GitHub invents.
std::string status_class(int32_t status) {
  return std::to_string(status / 100) + "xx";
}

double seconds_between(caf::timespan from, caf::timespan to) {
  return std::chrono::duration<double>(to - from).count();
}

void on_response(client_ptr self, const github_request& req,
                 caf::timespan started, const http_response& r,
                 caf::response_promise& rp) {
  auto& st = self->state;
  auto op = to_string(req.op);
  // Both clocks read now, as the response is in hand: wall-clock expiries
  // and resets then land on the actor clock where they belong.
  clock_bridge clocks{wall_now(), now(self)};
  st.stats->observe("ghscale_github_http_seconds", {{"op", op}},
                    seconds_between(started, clocks.actor_now));
  st.stats->add("ghscale_github_http_requests_total",
                {{"op", op}, {"class", status_class(r.status)}});
  auto res = parse_github_response(req, r, clocks);
  if (!res) {
    st.stats->add("ghscale_github_invalid_responses_total", {{"op", op}});
    log::warn("github_invalid_response",
              {{"op", op}, {"status", r.status}, {"error", describe(res.error())}});
    rp.deliver(std::move(res.error()));
    return;
  }
  rp.deliver(std::move(*res));
}

} // namespace

github_api_actor::behavior_type
github_rest_client(client_ptr self, github_endpoint ep, http_actor http,
                   caf::timespan timeout, metrics_ptr stats) {
  self->state.endpoint = std::move(ep);
  self->state.http = std::move(http);
  self->state.timeout = timeout;
  self->state.stats = std::move(stats);
  return {
    [self](atom::call, github_request& req) -> caf::result<github_response> {
      if (auto problem = github_request_problem(req))
        return problem;
      auto& st = self->state;
      auto rp = self->make_response_promise<github_response>();
      auto started = now(self);
      auto http_req = build_github_request(st.endpoint, req, st.timeout);
      self->request(st.http, st.timeout + engine_grace, atom::http_v,
                    std::move(http_req))
        .then(
          [self, req, started, rp](http_response& r) mutable {
            on_response(self, req, started, r, rp);
          },
          [self, op = to_string(req.op), rp](caf::error& err) mutable {
            // Transport failures (DNS, TLS, timeouts) pass through as they
            // are: they already say what and where, and callers retry them.
            self->state.stats->add("ghscale_github_http_requests_total",
                                   {{"op", op}, {"class", "transport_error"}});
            rp.deliver(std::move(err));
          });
      return rp;
    },
  };
}

} // namespace ghscale
