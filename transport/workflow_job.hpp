#pragma once
// Queue message bodies <-> job_event. Pure functions, no actors, no sockets.
//
// Two body formats are accepted:
//  * the raw GitHub `workflow_job` webhook payload (as delivered to a webhook
//    endpoint or forwarded by EventBridge with the payload as `detail`);
//  * the message the terraform-aws-github-runner webhook Lambda puts on SQS:
//    {id, eventType, repositoryName, repositoryOwner, installationId,
//     repoOwnerType, labels?, retryCounter?}. It carries only queued jobs.
#include "messages/types.hpp"

#include <caf/expected.hpp>

#include <string>

namespace ghscale {

/// Parses a body in either format. Errors are `errc::malformed_event` with a
/// context that says what is wrong and where (a JSON path), never the body.
caf::expected<job_event> parse_job_event(const std::string& body);

/// The Lambda's SQS format for a queued job (what ingress puts on SQS).
std::string to_lambda_message(const job_event& ev);

/// A minimal but schema-faithful `workflow_job` webhook payload.
std::string to_webhook_payload(const job_event& ev);

} // namespace ghscale
