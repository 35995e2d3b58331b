#pragma once
// An ec2_actor on the real EC2 API (query protocol): CreateFleet instant,
// DescribeInstances across all pages, TerminateInstances per instance. Its
// aws_caller keeps each API under EC2's published request buckets and
// retries throttled calls; a CreateFleet still throttled after that answers
// errc::throttled, and its retries reuse the ClientToken.
#include "actors/clients/aws_call.hpp"
#include "actors/ops/metrics.hpp"
#include "messages/actors.hpp"
#include "transport/aws_protocol.hpp"

#include <caf/all.hpp>

#include <cstdint>

namespace ghscale {

struct ec2_client_state {
  aws_endpoint endpoint;
  aws_call_options opts;
  aws_caller_actor caller; // linked: it ends with this actor
  static inline const char* name = "ec2_client";
};

ec2_actor::behavior_type
ec2_client(ec2_actor::stateful_pointer<ec2_client_state> self, aws_endpoint ep,
           aws_credentials_actor creds, http_actor http, aws_call_options opts,
           metrics_ptr stats, uint64_t seed);

} // namespace ghscale
