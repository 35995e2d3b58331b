#pragma once
// GitHub webhook ingress as a pure decision: given one HTTP request, either
// the queue message to forward or the status and reason to answer with. No
// sockets, no actors; actors/ops/ops_server serves it over HTTP(S).
//
// Reasons are bounded labels (they become metric labels and log fields);
// neither a reason nor a response text ever quotes the body or a secret.
#include "messages/config.hpp"
#include "messages/secret.hpp"
#include "messages/types.hpp"

#include <caf/expected.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ghscale {

/// What the webhook checks a delivery against.
struct webhook_settings {
  /// Every secret currently accepted; several while one is being rotated.
  std::vector<secret_string> secrets;
  /// "owner/repo" or "owner/*", case-insensitive; empty = every repository.
  std::vector<std::string> allowed_repositories;
  int64_t max_body_bytes = 1024 * 1024;
};

/// The settings of `cfg` with secrets loaded by the caller.
webhook_settings make_webhook_settings(const server_config& cfg,
                                       std::vector<secret_string> secrets);

/// Reads each file as one webhook secret, without its trailing line break.
/// Errors (`errc::invalid_config`) name the file and why, never its content.
caf::expected<std::vector<secret_string>>
load_webhook_secrets(const std::vector<std::string>& files);

/// One delivery as the HTTP server saw it. Header names compare
/// case-insensitively.
struct webhook_request {
  std::string method;
  std::vector<http_header> headers;
  std::string body;
};

/// The answer to one delivery.
struct webhook_decision {
  int status = 0;       // HTTP status
  /// "accepted" when `message` is set, else why not: unsigned, bad_signature,
  /// too_large, malformed, wrong_event, ignored_event, ping,
  /// unsupported_action, repository_not_allowed, method_not_allowed.
  std::string outcome;
  std::string response; // short plain-text response body
  /// The queue message body to send: the scale-up Lambda's SQS format for
  /// queued jobs, a normalized workflow_job payload for the other actions
  /// (the Lambda format cannot express them).
  std::optional<std::string> message;
  /// The job the delivery is about, when it was parsed (for logs).
  std::optional<job_event> event;
};

/// Verifies, filters and converts one delivery. The checks run in this
/// order so that nothing unauthenticated is parsed: method, size, signature,
/// event type, body, action, repository.
webhook_decision decide_webhook(const webhook_settings& settings,
                                const webhook_request& request);

/// True if `header` ("sha256=<hex>") is the HMAC-SHA256 of `body` under any
/// of `secrets`. Every secret is checked, in time independent of which one
/// (if any) matches.
bool signature_matches(const std::vector<secret_string>& secrets,
                       std::string_view header, std::string_view body);

/// True if `allowed` is empty or one entry names the repository ("owner/repo")
/// or its owner ("owner/*"), ignoring case.
bool repository_allowed(const std::vector<std::string>& allowed,
                        const repository_ref& repository);

} // namespace ghscale
