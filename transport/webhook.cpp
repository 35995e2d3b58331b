#include "transport/webhook.hpp"
#include "transport/json.hpp"

#include "messages/text.hpp"
#include "transport/digest.hpp"
#include "transport/files.hpp"
#include "transport/url.hpp"
#include "transport/workflow_job.hpp"

#include <rapidjson/document.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <utility>

namespace ghscale {

namespace {

constexpr std::string_view signature_prefix = "sha256=";

webhook_decision reject(int status, std::string outcome, std::string response) {
  webhook_decision out;
  out.status = status;
  out.outcome = std::move(outcome);
  out.response = std::move(response);
  return out;
}

/// The action GitHub names, if the body is a workflow_job payload at all:
/// an object with a `workflow_job` object and an `action` string. Checked
/// before the full parse so that an action this version does not know is
/// told apart from a broken body.
std::optional<std::string> workflow_job_action(const std::string& body) {
  rapidjson::Document doc;
  parse_outside_json(doc, body);
  if (doc.HasParseError() || !doc.IsObject())
    return std::nullopt;
  auto job = doc.FindMember("workflow_job");
  auto action = doc.FindMember("action");
  if (job == doc.MemberEnd() || !job->value.IsObject()
      || action == doc.MemberEnd() || !action->value.IsString())
    return std::nullopt;
  return std::string{action->value.GetString(),
                     action->value.GetStringLength()};
}

bool forwarded_action(const std::string& action) {
  for (auto x : {job_action::queued, job_action::in_progress,
                 job_action::completed, job_action::waiting})
    if (action == to_string(x))
      return true;
  return false;
}

/// The body for the queue: what the scale-up Lambda's webhook sent for
/// queued jobs, so that either side of a migration can consume it.
std::string queue_body(const job_event& ev) {
  return ev.action == job_action::queued ? to_lambda_message(ev)
                                         : to_webhook_payload(ev);
}

/// Drops one trailing "\n" or "\r\n": editors and `echo` add it, and it is
/// never part of the secret GitHub was given.
std::string without_trailing_newline(std::string text) {
  if (!text.empty() && text.back() == '\n')
    text.pop_back();
  if (!text.empty() && text.back() == '\r')
    text.pop_back();
  return text;
}

caf::error secret_file_error(const std::string& path, const std::string& why) {
  return caf::make_error(errc::invalid_config,
                         "webhook secret file " + path + ": " + why);
}

} // namespace

webhook_settings make_webhook_settings(const server_config& cfg,
                                       std::vector<secret_string> secrets) {
  webhook_settings out;
  out.secrets = std::move(secrets);
  out.allowed_repositories = cfg.allowed_repositories;
  out.max_body_bytes = cfg.max_body_bytes;
  return out;
}

caf::expected<std::vector<secret_string>>
load_webhook_secrets(const std::vector<std::string>& files) {
  if (files.empty())
    return caf::make_error(errc::invalid_config,
                           "server: no webhook secret files configured");
  std::vector<secret_string> out;
  for (const auto& path : files) {
    errno = 0;
    auto text = read_file(path);
    if (!text)
      return secret_file_error(path, std::string{"cannot read: "}
                                       + (errno != 0 ? std::strerror(errno)
                                                     : "unknown error"));
    auto secret = without_trailing_newline(std::move(*text));
    if (secret.empty())
      return secret_file_error(path, "is empty");
    out.push_back(secret_string{std::move(secret)});
  }
  return out;
}

bool signature_matches(const std::vector<secret_string>& secrets,
                       std::string_view header, std::string_view body) {
  auto given = ascii_lower(header); // hex digits may come in either case
  bool matched = false;
  for (const auto& secret : secrets) {
    auto expected = std::string{signature_prefix}
                    + hex(hmac_sha256(secret.value, body));
    // No early exit: the time taken must not tell which secret matched.
    matched |= constant_time_equals(given, expected);
  }
  return matched;
}

bool repository_allowed(const std::vector<std::string>& allowed,
                        const repository_ref& repository) {
  if (allowed.empty())
    return true;
  auto full_name = repository.full_name();
  auto owner_wildcard = repository.owner + "/*";
  return std::any_of(allowed.begin(), allowed.end(), [&](const auto& entry) {
    return iequals(entry, full_name) || iequals(entry, owner_wildcard);
  });
}

namespace {

/// How many times header `name` was sent (names compare case-insensitively).
size_t header_count(const std::vector<http_header>& headers, std::string_view name) {
  return static_cast<size_t>(std::count_if(headers.begin(), headers.end(),
                                           [&](auto& h) { return iequals(h.name, name); }));
}

/// A form-encoded delivery (GitHub's `content_type=form`) carries the JSON
/// in its `payload` field; the signature covers the body as sent.
std::optional<std::string> delivered_json(const webhook_request& request) {
  auto type = find_header(request.headers, "Content-Type");
  if (type == nullptr
      || ascii_lower(*type).rfind("application/x-www-form-urlencoded", 0) != 0)
    return request.body;
  return form_field(request.body, "payload");
}

} // namespace

webhook_decision decide_webhook(const webhook_settings& settings,
                                const webhook_request& request) {
  if (request.method != "POST")
    return reject(405, "method_not_allowed", "only POST is accepted");
  if (static_cast<int64_t>(request.body.size()) > settings.max_body_bytes)
    return reject(413, "too_large",
                  "body over " + std::to_string(settings.max_body_bytes)
                    + " bytes");
  auto signature = find_header(request.headers, "X-Hub-Signature-256");
  if (signature == nullptr)
    return reject(401, "unsigned", "missing X-Hub-Signature-256");
  // Two signatures are one too many: whichever a proxy would pick, the
  // delivery is not what GitHub signed once.
  if (header_count(request.headers, "X-Hub-Signature-256") > 1)
    return reject(401, "bad_signature", "more than one X-Hub-Signature-256");
  if (!signature_matches(settings.secrets, *signature, request.body))
    return reject(401, "bad_signature", "signature does not match");
  auto json = delivered_json(request);
  if (!json)
    return reject(400, "malformed", "form-encoded delivery without a payload field");
  auto event = find_header(request.headers, "X-GitHub-Event");
  if (event == nullptr)
    return reject(400, "wrong_event", "missing X-GitHub-Event");
  if (*event == "ping")
    return reject(200, "ping", "pong");
  if (*event != "workflow_job")
    return reject(202, "ignored_event", "event ignored: not workflow_job");
  auto action = workflow_job_action(*json);
  if (!action)
    return reject(400, "malformed", "not a workflow_job payload");
  // A signed, well-formed delivery of an action we do not forward is not a
  // failure: answering 2xx keeps GitHub's delivery log clean when GitHub
  // adds actions.
  if (!forwarded_action(*action))
    return reject(202, "unsupported_action", "action ignored");
  auto ev = parse_job_event(*json);
  if (!ev)
    return reject(400, "malformed", "not a valid workflow_job payload");
  // 403, as the scale-up Lambda answered: a signed delivery from outside the
  // allow-list means the hook is installed wider than ghscale is meant to
  // serve, and GitHub's delivery log is where an admin sees that.
  if (!repository_allowed(settings.allowed_repositories, ev->repository)) {
    auto out = reject(403, "repository_not_allowed", "repository not allowed");
    out.event = std::move(*ev);
    return out;
  }
  webhook_decision out;
  out.status = 202;
  out.outcome = "accepted";
  out.response = "accepted";
  out.message = queue_body(*ev);
  out.event = std::move(*ev);
  return out;
}

} // namespace ghscale
