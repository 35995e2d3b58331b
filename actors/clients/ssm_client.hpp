#pragma once
// An ssm_client_actor on the real SSM Parameter Store (AWS JSON 1.1): puts
// runner configs as SecureString parameters (with the configured KMS key, or
// the account's default), deletes them (a parameter already gone counts as
// deleted), and reads decrypted values (the App's private key). Its
// aws_caller signs, rate-limits and retries the calls.
#include "actors/clients/aws_call.hpp"
#include "actors/ops/metrics.hpp"
#include "messages/actors.hpp"
#include "transport/aws_protocol.hpp"

#include <caf/all.hpp>

#include <cstdint>
#include <string>

namespace ghscale {

struct ssm_client_state {
  aws_endpoint endpoint;
  aws_call_options opts;
  std::string kms_key_id; // "" = the account's default key for SSM
  aws_caller_actor caller; // linked: it ends with this actor
  static inline const char* name = "ssm_client";
};

ssm_client_actor::behavior_type
ssm_client(ssm_client_actor::stateful_pointer<ssm_client_state> self,
           aws_endpoint ep, aws_credentials_actor creds, http_actor http,
           aws_call_options opts, std::string kms_key_id, double throughput,
           metrics_ptr stats, uint64_t seed);

} // namespace ghscale
