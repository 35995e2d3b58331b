#include "actors/clients/aws_call.hpp"

#include "actors/backoff.hpp"
#include "actors/clock.hpp"
#include "actors/ops/log.hpp"
#include "transport/aws_protocol.hpp"
#include "transport/url.hpp"
#include "transport/wall_clock.hpp"

#include <utility>

namespace ghscale {

namespace {

using namespace std::chrono_literals;
using caller_ptr = aws_caller_actor::stateful_pointer<aws_caller_state>;

/// The engine times an exchange out itself; CAF's request timeout is only
/// the backstop, a little later.
constexpr caf::timespan reply_margin = 1s;

label_set call_labels(caller_ptr self, const pending_aws_call& c) {
  return {{"service", self->state.scope.service}, {"api", c.call.api}};
}

void count(caller_ptr self, const char* name, const pending_aws_call& c) {
  self->state.stats->add(name, call_labels(self, c));
}

void count_status(caller_ptr self, const pending_aws_call& c,
                  const std::string& status) {
  auto labels = call_labels(self, c);
  labels.emplace_back("status", status);
  self->state.stats->add("ghscale_aws_calls_total", labels);
}

template <class T>
void finish(caller_ptr self, uint64_t id, T&& outcome) {
  auto i = self->state.calls.find(id);
  i->second.promise.deliver(std::forward<T>(outcome));
  self->state.calls.erase(i);
}

caf::error failure(const pending_aws_call& c, errc code, const std::string& why) {
  return caf::make_error(code, c.call.what + ": " + why);
}

/// Backs off before the next attempt, or says no when attempts ran out.
bool retry_later(caller_ptr self, uint64_t id, const std::string& reason) {
  auto& c = self->state.calls.at(id);
  auto& opts = self->state.opts;
  if (c.attempts >= opts.max_attempts)
    return false;
  auto delay = jittered_backoff(opts.backoff_base, opts.backoff_max, c.attempts,
                                opts.jitter, self->state.rng);
  if (now(self) + delay >= c.deadline)
    return false;
  count(self, "ghscale_aws_retries_total", c);
  log::warn("aws call retry", {{"service", self->state.scope.service},
                               {"api", c.call.api},
                               {"attempt", c.attempts},
                               {"reason", reason},
                               {"delay_ms", to_ms(delay)}});
  c.backing_off = true;
  self->delayed_send(self, delay, atom::flush_v, id);
  return true;
}

void on_response(caller_ptr self, uint64_t id, http_response res) {
  auto& c = self->state.calls.at(id);
  count_status(self, c, std::to_string(res.status));
  auto err = parse_aws_error(res);
  if (err && err->throttled())
    count(self, "ghscale_aws_throttled_total", c);
  if (err && err->retryable() && retry_later(self, id, err->code))
    return;
  if (err)
    log::warn("aws call failed", {{"service", self->state.scope.service},
                                  {"api", c.call.api},
                                  {"status", static_cast<int64_t>(res.status)},
                                  {"code", err->code},
                                  {"attempts", c.attempts}});
  finish(self, id, std::move(res));
}

void on_transport_failure(caller_ptr self, uint64_t id, const caf::error& err) {
  auto& c = self->state.calls.at(id);
  count_status(self, c, "error");
  auto why = describe(err);
  if (retry_later(self, id, why))
    return;
  log::warn("aws call failed", {{"service", self->state.scope.service},
                                {"api", c.call.api},
                                {"reason", why},
                                {"attempts", c.attempts}});
  auto timed_out = err == caf::sec::request_timeout || err == errc::timeout;
  finish(self, id, failure(c, timed_out ? errc::timeout : errc::backend_failure, why));
}

void send_signed(caller_ptr self, uint64_t id, const aws_credentials& creds) {
  auto& c = self->state.calls.at(id);
  auto req = c.call.request; // each attempt is signed afresh
  sign_request(req, creds, self->state.scope, wall_now());
  self->request(self->state.http, req.timeout + reply_margin, atom::http_v,
                std::move(req))
    .then([=](http_response& res) { on_response(self, id, std::move(res)); },
          [=](caf::error& err) { on_transport_failure(self, id, err); });
}

void attempt(caller_ptr self, uint64_t id) {
  auto& c = self->state.calls.at(id);
  ++c.attempts;
  self->request(self->state.creds, self->state.opts.call_timeout,
                atom::credentials_v)
    .then([=](aws_credentials& creds) { send_signed(self, id, creds); },
          [=](caf::error& err) {
            auto& failed = self->state.calls.at(id);
            // No credential source at all is a configuration problem; a
            // provider that is restarting or slow is only unavailable.
            auto code = err == errc::invalid_config ? errc::invalid_config
                                                    : errc::unavailable;
            finish(self, id, failure(failed, code, context_of(err)));
          });
}

/// Starts as many waiting calls of `api` as its bucket allows, and sets a
/// wake-up for the first one that must wait.
void pump(caller_ptr self, const std::string& api) {
  auto& st = self->state;
  auto& queue = st.waiting[api];
  auto bucket = st.buckets.find(api);
  while (!queue.empty()) {
    auto id = queue.front();
    auto& c = st.calls.at(id);
    if (now(self) + c.call.request.timeout >= c.deadline) {
      queue.pop_front();
      finish(self, id, failure(c, errc::throttled,
                               "no " + api + " token of the client-side rate "
                               "limit in time"));
      continue;
    }
    auto wait = bucket == st.buckets.end() ? caf::timespan{0}
                                           : bucket->second.take(now(self));
    if (wait.count() > 0) {
      if (st.wake_ups.emplace(api, id).second)
        self->delayed_send(self, wait, atom::flush_v, id);
      return;
    }
    queue.pop_front();
    attempt(self, id);
  }
}

void enqueue(caller_ptr self, uint64_t id) {
  auto& api = self->state.calls.at(id).call.api;
  self->state.waiting[api].push_back(id);
  pump(self, api);
}

/// A timer fired: a backoff is over, or a bucket may have a token again.
void on_flush(caller_ptr self, uint64_t id) {
  auto& st = self->state;
  for (auto i = st.wake_ups.begin(); i != st.wake_ups.end(); ++i) {
    if (i->second == id) {
      auto api = i->first;
      st.wake_ups.erase(i);
      pump(self, api);
      return;
    }
  }
  auto call = st.calls.find(id);
  if (call != st.calls.end() && call->second.backing_off) {
    call->second.backing_off = false;
    enqueue(self, id);
  }
}

} // namespace

caf::timespan aws_call_budget(const aws_call_options& opts,
                              caf::timespan exchange_timeout) {
  auto per_attempt = exchange_timeout + reply_margin + opts.call_timeout
                     + opts.backoff_max;
  return per_attempt * opts.max_attempts + reply_margin;
}

caf::error call_error(const caf::expected<http_response>& answer,
                      const std::string& what) {
  if (!answer)
    return answer.error();
  if (auto err = parse_aws_error(*answer))
    return to_error(*err, what);
  return caf::none;
}

std::map<std::string, bucket_spec> ec2_request_buckets() {
  return {
    {"CreateFleet", {50, 5}},
    {"DescribeInstances", {100, 20}},
    {"TerminateInstances", {50, 5}},
    {"CreateTags", {50, 5}},
  };
}

std::map<std::string, bucket_spec> ssm_request_buckets(double per_second) {
  bucket_spec spec{per_second, per_second};
  return {{"PutParameter", spec}, {"DeleteParameter", spec}, {"GetParameter", spec}};
}

aws_caller_actor::behavior_type
aws_caller(aws_caller_actor::stateful_pointer<aws_caller_state> self,
           sigv4_scope scope, aws_credentials_actor creds, http_actor http,
           aws_call_options opts, std::map<std::string, bucket_spec> buckets,
           metrics_ptr stats, uint64_t seed) {
  auto& st = self->state;
  st.scope = std::move(scope);
  st.creds = std::move(creds);
  st.http = std::move(http);
  st.opts = opts;
  st.stats = std::move(stats);
  st.rng.seed(seed);
  for (auto& [api, spec] : buckets)
    st.buckets.emplace(api, token_bucket{spec, now(self)});
  return {
    [=](atom::call, aws_api_call& call) -> caf::result<http_response> {
      // The signer insists on a valid URL; a bad endpoint is a config error,
      // not a reason to crash.
      if (auto url = parse_url(call.request.url); !url)
        return caf::make_error(errc::invalid_config,
                               call.what + ": " + describe(url.error()));
      auto id = self->state.next_id++;
      auto& c = self->state.calls[id];
      c.promise = self->make_response_promise<http_response>();
      c.deadline = now(self) + aws_call_budget(self->state.opts, call.request.timeout)
                   - reply_margin;
      c.call = std::move(call);
      auto promise = c.promise;
      enqueue(self, id);
      return promise;
    },
    [=](atom::flush, uint64_t id) { on_flush(self, id); },
  };
}

} // namespace ghscale
