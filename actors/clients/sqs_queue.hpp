#pragma once
// A queue_actor on a real SQS queue (AWS JSON protocol): long-poll receives,
// batch deletes, visibility changes and sends split into calls of 10 entries
// whose per-entry results are merged, and the queue's approximate depth.
// Its aws_caller signs, rate-limits and retries the calls.
#include "actors/clients/aws_call.hpp"
#include "actors/ops/metrics.hpp"
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "transport/aws_protocol.hpp"

#include <caf/all.hpp>

#include <cstdint>

namespace ghscale {

struct sqs_queue_state {
  queue_config queue;
  aws_endpoint endpoint;
  aws_call_options opts;
  aws_caller_actor caller; // linked: it ends with this actor
  static inline const char* name = "sqs_queue";
};

queue_actor::behavior_type
sqs_queue(queue_actor::stateful_pointer<sqs_queue_state> self, queue_config q,
          aws_endpoint ep, aws_credentials_actor creds, http_actor http,
          aws_call_options opts, metrics_ptr stats, uint64_t seed);

} // namespace ghscale
