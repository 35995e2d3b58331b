#pragma once
// The AWS credential chain as an actor: environment, then the shared
// credentials/config files, then the EC2 instance metadata service (IMDSv2,
// through the HTTP engine). Resolves on first use, caches, and refreshes
// expiring credentials ahead of their expiry, one resolution at a time:
// callers asking meanwhile wait for that one.
#include "messages/actors.hpp"
#include "transport/aws_credentials.hpp"

#include <caf/all.hpp>

#include <chrono>
#include <optional>
#include <vector>

namespace ghscale {

struct aws_credentials_options {
  std::string profile; // "" = AWS_PROFILE or "default"
  caf::timespan refresh_before = std::chrono::minutes(5);
  caf::timespan imds_timeout = std::chrono::seconds(2);
  caf::timespan retry_after_failure = std::chrono::seconds(10);
};

struct aws_credentials_provider_state {
  std::optional<aws_credentials> current;
  caf::timespan expires_at{0}; // of `current`, on the actor clock; 0: never
  caf::timespan refresh_at{0}; // when the armed refresh is due; 0: none armed
  bool resolving = false;      // a resolution of the chain is under way
  /// Callers waiting for the resolution under way.
  std::vector<caf::typed_response_promise<aws_credentials>> waiters;
  static inline const char* name = "aws_credentials_provider";
};

aws_credentials_actor::behavior_type aws_credentials_provider(
  aws_credentials_actor::stateful_pointer<aws_credentials_provider_state> self,
  env_lookup env, http_actor http, aws_credentials_options opts);

} // namespace ghscale
