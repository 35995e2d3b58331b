#pragma once
// The one place that performs a signed AWS call from an actor. Each service
// client (SQS queue, EC2, SSM) spawns its own aws_caller, linked to it, and
// hands it unsigned requests. The caller waits for a token of the API's
// client-side bucket, asks for the current credentials, signs with SigV4 at
// wall time, sends through the HTTP engine, and retries throttling, 5xx and
// transport failures with jittered exponential backoff. A retry resends the
// same body: a CreateFleet keeps its ClientToken, so it never launches twice.
#include "actors/ops/metrics.hpp"
#include "actors/token_bucket.hpp"
#include "messages/actors.hpp"
#include "transport/sigv4.hpp"

#include <caf/all.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <random>
#include <string>
#include <unordered_map>

namespace ghscale {

struct aws_call_options {
  caf::timespan call_timeout = std::chrono::seconds(30); // one HTTP exchange
  int32_t max_attempts = 4;
  caf::timespan backoff_base = std::chrono::milliseconds(200);
  caf::timespan backoff_max = std::chrono::seconds(10);
  double jitter = 0.2;
};

/// How long a client waits for its caller's answer to a call whose HTTP
/// exchange may take `exchange_timeout`: every attempt, its credentials and
/// its backoff, plus a margin. The caller gives up on a call by then.
caf::timespan aws_call_budget(const aws_call_options& opts,
                              caf::timespan exchange_timeout);

/// EC2's published request-rate buckets for the calls ghscale makes
/// (docs.aws.amazon.com/AWSEC2/latest/APIReference/throttling.html):
/// CreateFleet 50 burst refilling 5/s, DescribeInstances 100 /
/// 20/s, and the mutating TerminateInstances and CreateTags 50 / 5/s.
std::map<std::string, bucket_spec> ec2_request_buckets();

/// SSM Parameter Store's throughput for PutParameter, DeleteParameter and
/// GetParameter: 40 transactions a second by default, more once an account
/// turns "higher throughput" on (aws.ssm_throughput).
std::map<std::string, bucket_spec> ssm_request_buckets(double per_second);

/// Sends `call` through a client's `caller` from actor `self` and continues
/// with the answer (or the failure): `on_answer(caf::expected<http_response>)`.
/// The request's timeout covers every attempt the caller may make.
template <class Self, class OnAnswer>
void call_aws(Self* self, const aws_caller_actor& caller,
              const aws_call_options& opts, aws_api_call call,
              OnAnswer on_answer) {
  auto budget = aws_call_budget(opts, call.request.timeout);
  self->request(caller, budget, atom::call_v, std::move(call))
    .then(
      [=](http_response& res) mutable {
        on_answer(caf::expected<http_response>{std::move(res)});
      },
      [=](caf::error& err) mutable {
        on_answer(caf::expected<http_response>{std::move(err)});
      });
}

/// The error a call ended with: its failure, or the AWS error its answer
/// carries (see to_error); none for a 2xx answer.
caf::error call_error(const caf::expected<http_response>& answer,
                      const std::string& what);

/// Answers `promise` with `parse(body)` (a caf::expected<T>) of a
/// successful call, or with the error the call ended with.
template <class T, class Parse>
void deliver_parsed(caf::typed_response_promise<T>& promise,
                    const caf::expected<http_response>& answer,
                    const std::string& what, Parse parse) {
  if (auto err = call_error(answer, what)) {
    promise.deliver(std::move(err));
    return;
  }
  auto parsed = parse(answer->body.value);
  if (parsed)
    promise.deliver(std::move(*parsed));
  else
    promise.deliver(std::move(parsed.error()));
}

/// One call in the caller's hands.
struct pending_aws_call {
  aws_api_call call;
  caf::typed_response_promise<http_response> promise;
  int32_t attempts = 0;      // sent so far
  caf::timespan deadline{0}; // actor clock: answer by then
  bool backing_off = false;  // waiting for its backoff, not for a token
};

struct aws_caller_state {
  sigv4_scope scope;
  aws_credentials_actor creds;
  http_actor http;
  aws_call_options opts;
  metrics_ptr stats;
  std::mt19937_64 rng;
  /// Client-side buckets by API; APIs without one are not rate-limited here.
  std::map<std::string, token_bucket> buckets;
  /// Calls waiting for a token, by API, in arrival order.
  std::map<std::string, std::deque<uint64_t>> waiting;
  /// APIs whose waiting calls have a wake-up timer set, with the call id
  /// that timer carries.
  std::map<std::string, uint64_t> wake_ups;
  std::unordered_map<uint64_t, pending_aws_call> calls;
  uint64_t next_id = 1;
  static inline const char* name = "aws_caller";
};

aws_caller_actor::behavior_type
aws_caller(aws_caller_actor::stateful_pointer<aws_caller_state> self,
           sigv4_scope scope, aws_credentials_actor creds, http_actor http,
           aws_call_options opts, std::map<std::string, bucket_spec> buckets,
           metrics_ptr stats, uint64_t seed);

} // namespace ghscale
