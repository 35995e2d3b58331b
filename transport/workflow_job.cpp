#include "transport/workflow_job.hpp"
#include "transport/json.hpp"

#include "transport/wall_clock.hpp"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <stdexcept>
#include <utility>

namespace ghscale {

namespace {

/// SQS caps a message at 256 KiB and GitHub a webhook payload at 25 MB; a
/// workflow_job payload is a few KiB. Anything past this is not one of ours,
/// and parsing it would only cost memory.
constexpr size_t max_body_bytes = 1024 * 1024;


/// GitHub's event name, which EventBridge and the Lambda format both carry.
constexpr const char* workflow_job_event = "workflow_job";

caf::error malformed(std::string what) {
  return caf::make_error(errc::malformed_event, std::move(what));
}

caf::error malformed_at(const std::string& what, const std::string& path) {
  return malformed(what + " at " + path);
}

/// RapidJSON's English message, without its closing period.
std::string parse_error_text(rapidjson::ParseErrorCode code) {
  std::string text = rapidjson::GetParseError_En(code);
  if (!text.empty() && text.back() == '.')
    text.pop_back();
  return text;
}

/// `value` quoted for an error message when it is a short identifier, else
/// nothing: a body field may hold anything, including a secret.
std::string quoted_if_identifier(const std::string& value) {
  constexpr size_t max_len = 16; // GitHub and AWS tokens are longer
  auto identifier_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
           || (c >= '0' && c <= '9') || c == '_' || c == '-';
  };
  if (value.empty() || value.size() > max_len
      || !std::all_of(value.begin(), value.end(), identifier_char))
    return "";
  return " '" + value + "'";
}

/// A JSON value (nullptr when absent) and the JSON path leading to it, so
/// every error can say where it is without quoting the body.
struct located {
  const rapidjson::Value* value;
  std::string path;

  /// Absent or JSON null: optional fields take their default.
  bool missing() const {
    return value == nullptr || value->IsNull();
  }

  /// The member `key`; absent when this is no object or lacks the key.
  located member(const char* key) const {
    std::string child_path = path + "." + key;
    if (value == nullptr || !value->IsObject())
      return {nullptr, std::move(child_path)};
    auto it = value->FindMember(key);
    if (it == value->MemberEnd())
      return {nullptr, std::move(child_path)};
    return {&it->value, std::move(child_path)};
  }

  caf::error kind_error(const char* kind) const {
    return malformed_at(std::string{missing() ? "missing " : "expected "}
                          + kind,
                        path);
  }
};

caf::error require_object(const located& at) {
  if (at.missing() || !at.value->IsObject())
    return at.kind_error("object");
  return caf::none;
}

caf::error read_string(const located& at, std::string& out) {
  if (at.missing() || !at.value->IsString())
    return at.kind_error("string");
  out.assign(at.value->GetString(), at.value->GetStringLength());
  return caf::none;
}

caf::error read_name(const located& at, std::string& out) {
  if (auto err = read_string(at, out))
    return err;
  if (out.empty())
    return malformed_at("empty name", at.path);
  return caf::none;
}

/// An absent or null string reads as "".
caf::error read_optional_string(const located& at, std::string& out) {
  if (at.missing()) {
    out.clear();
    return caf::none;
  }
  if (!at.value->IsString())
    return malformed_at("expected string or null", at.path);
  return read_string(at, out);
}

/// An integral JSON number in [min, max(T)].
template <class T>
caf::error read_integer(const located& at, T min, T& out) {
  if (at.missing() || !at.value->IsNumber())
    return at.kind_error("number");
  if (!at.value->IsInt64())
    return malformed_at(at.value->IsUint64() ? "number out of range"
                                             : "expected integer",
                        at.path);
  auto x = at.value->GetInt64();
  if (x < static_cast<int64_t>(min)
      || x > static_cast<int64_t>(std::numeric_limits<T>::max()))
    return malformed_at("number out of range", at.path);
  out = static_cast<T>(x);
  return caf::none;
}

/// Like read_integer, but an absent or null number keeps `out` unchanged.
template <class T>
caf::error read_optional_integer(const located& at, T min, T& out) {
  return at.missing() ? caf::none : read_integer(at, min, out);
}

caf::error read_strings(const located& at, std::vector<std::string>& out) {
  if (at.missing() || !at.value->IsArray())
    return at.kind_error("array of strings");
  out.clear();
  const auto& array = *at.value;
  for (rapidjson::SizeType i = 0; i < array.Size(); ++i) {
    if (!array[i].IsString())
      return malformed_at("expected array of strings",
                          at.path + "[" + std::to_string(i) + "]");
    out.emplace_back(array[i].GetString(), array[i].GetStringLength());
  }
  return caf::none;
}

caf::error read_owner_type(const located& at, owner_type& out) {
  std::string text;
  if (auto err = read_string(at, text))
    return err;
  if (text == to_string(owner_type::organization))
    out = owner_type::organization;
  else if (text == to_string(owner_type::user))
    out = owner_type::user;
  else
    return malformed_at("unsupported owner type" + quoted_if_identifier(text),
                        at.path);
  return caf::none;
}

caf::error read_action(const located& at, job_action& out) {
  std::string text;
  if (auto err = read_string(at, text))
    return err;
  for (auto candidate : {job_action::queued, job_action::in_progress,
                         job_action::completed, job_action::waiting}) {
    if (text == to_string(candidate)) {
      out = candidate;
      return caf::none;
    }
  }
  return malformed_at("unsupported action" + quoted_if_identifier(text),
                      at.path);
}

/// Requires the discriminator string at `at`, named `what`, to be `expected`.
caf::error require_tag(const located& at, const char* what,
                       const char* expected) {
  std::string text;
  if (auto err = read_string(at, text))
    return err;
  if (text != expected)
    return malformed_at(std::string{"unsupported "} + what
                          + quoted_if_identifier(text),
                        at.path);
  return caf::none;
}

/// An RFC 3339 time, or null / absent (left at 0).
caf::error read_optional_time(const located& at, caf::timespan& out) {
  std::string text;
  if (auto err = read_optional_string(at, text))
    return err;
  if (text.empty())
    return caf::none;
  auto parsed = parse_rfc3339(text);
  if (!parsed)
    return malformed_at("not an RFC 3339 time", at.path);
  out = *parsed;
  return caf::none;
}

/// The fields of the GitHub `workflow_job` webhook payload at `payload`.
caf::expected<job_event> read_webhook(const located& payload) {
  job_event ev;
  auto job = payload.member("workflow_job");
  auto repository = payload.member("repository");
  auto owner = repository.member("owner");
  if (auto err = read_action(payload.member("action"), ev.action))
    return err;
  if (auto err = require_object(job))
    return err;
  if (auto err = read_integer<int64_t>(job.member("id"), 1, ev.key.job_id))
    return err;
  if (auto err = read_optional_integer<int32_t>(job.member("run_attempt"), 1,
                                                ev.key.run_attempt))
    return err;
  if (auto err = read_integer<int64_t>(job.member("run_id"), 0, ev.run_id))
    return err;
  if (auto err = read_strings(job.member("labels"), ev.labels))
    return err;
  if (auto err = read_optional_string(job.member("runner_name"),
                                      ev.runner_name))
    return err;
  if (auto err = read_optional_time(job.member("created_at"), ev.created_at))
    return err;
  if (auto err = read_optional_time(job.member("started_at"), ev.started_at))
    return err;
  if (auto err = read_name(repository.member("name"), ev.repository.repo))
    return err;
  if (auto err = read_name(owner.member("login"), ev.repository.owner))
    return err;
  if (auto err = read_owner_type(owner.member("type"), ev.repository.type))
    return err;
  if (auto err = read_optional_integer<int64_t>(
        payload.member("installation").member("id"), 0, ev.installation_id))
    return err;
  return ev;
}

/// EventBridge forwards the webhook payload unchanged as `detail`.
caf::expected<job_event> read_eventbridge(const located& envelope) {
  if (auto err = require_tag(envelope.member("detail-type"), "detail type",
                             workflow_job_event))
    return err;
  auto detail = envelope.member("detail");
  if (auto err = require_object(detail))
    return err;
  return read_webhook(detail);
}

/// The terraform-aws-github-runner scale-up message: queued jobs only, one
/// attempt it does not name (1), no run id and no runner.
caf::expected<job_event> read_lambda_message(const located& message) {
  job_event ev;
  ev.action = job_action::queued;
  if (auto err = require_tag(message.member("eventType"), "event type",
                             workflow_job_event))
    return err;
  if (auto err = read_integer<int64_t>(message.member("id"), 1,
                                       ev.key.job_id))
    return err;
  if (auto err = read_name(message.member("repositoryOwner"),
                           ev.repository.owner))
    return err;
  if (auto err = read_name(message.member("repositoryName"),
                           ev.repository.repo))
    return err;
  if (auto err = read_owner_type(message.member("repoOwnerType"),
                                 ev.repository.type))
    return err;
  if (auto err = read_integer<int64_t>(message.member("installationId"), 0,
                                       ev.installation_id))
    return err;
  if (auto labels = message.member("labels"); !labels.missing())
    if (auto err = read_strings(labels, ev.labels))
      return err;
  if (auto err = read_optional_integer<int32_t>(message.member("retryCounter"),
                                                0, ev.retry_counter))
    return err;
  return ev;
}

// -- writing -------------------------------------------------------------------

using json_writer = rapidjson::Writer<rapidjson::StringBuffer>;

void write_string(json_writer& out, const std::string& text) {
  out.String(text.data(), static_cast<rapidjson::SizeType>(text.size()));
}

void write_member(json_writer& out, const char* key, const std::string& text) {
  out.Key(key);
  write_string(out, text);
}

void write_member(json_writer& out, const char* key, int64_t number) {
  out.Key(key);
  out.Int64(number);
}

void write_member(json_writer& out, const char* key,
                  const std::vector<std::string>& texts) {
  out.Key(key);
  out.StartArray();
  for (const auto& text : texts)
    write_string(out, text);
  out.EndArray();
}

} // namespace

caf::expected<job_event> parse_job_event(const std::string& body) {
  if (body.size() > max_body_bytes)
    return malformed("body too large: " + std::to_string(body.size())
                     + " bytes, at most " + std::to_string(max_body_bytes));
  rapidjson::Document doc;
  parse_outside_json(doc, body);
  if (doc.HasParseError())
    return malformed("not JSON: " + parse_error_text(doc.GetParseError())
                     + " at offset " + std::to_string(doc.GetErrorOffset()));
  located root{&doc, "$"};
  if (auto err = require_object(root))
    return err;
  if (root.member("workflow_job").value != nullptr)
    return read_webhook(root);
  if (root.member("detail").value != nullptr)
    return read_eventbridge(root);
  if (root.member("eventType").value != nullptr)
    return read_lambda_message(root);
  return malformed("neither a workflow_job webhook nor a scale-up message");
}

std::string to_lambda_message(const job_event& ev) {
  // The format has no action: writing anything but a queued job would turn
  // it into one.
  if (ev.action != job_action::queued)
    throw std::logic_error("to_lambda_message: only queued jobs have a "
                           "scale-up message");
  rapidjson::StringBuffer buf;
  json_writer out{buf};
  out.StartObject();
  write_member(out, "id", ev.key.job_id);
  write_member(out, "eventType", std::string{workflow_job_event});
  write_member(out, "repositoryName", ev.repository.repo);
  write_member(out, "repositoryOwner", ev.repository.owner);
  write_member(out, "installationId", ev.installation_id);
  write_member(out, "repoOwnerType", to_string(ev.repository.type));
  write_member(out, "labels", ev.labels);
  write_member(out, "retryCounter", ev.retry_counter);
  out.EndObject();
  return {buf.GetString(), buf.GetSize()};
}

std::string to_webhook_payload(const job_event& ev) {
  rapidjson::StringBuffer buf;
  json_writer out{buf};
  out.StartObject();
  write_member(out, "action", to_string(ev.action));
  out.Key("workflow_job");
  out.StartObject();
  write_member(out, "id", ev.key.job_id);
  write_member(out, "run_id", ev.run_id);
  write_member(out, "run_attempt", ev.key.run_attempt);
  // A job's status names the same state as the action that reports it.
  write_member(out, "status", to_string(ev.action));
  write_member(out, "labels", ev.labels);
  out.Key("runner_name");
  if (ev.runner_name.empty())
    out.Null();
  else
    write_string(out, ev.runner_name);
  if (ev.created_at.count() > 0)
    write_member(out, "created_at", rfc3339(ev.created_at));
  if (ev.started_at.count() > 0)
    write_member(out, "started_at", rfc3339(ev.started_at));
  out.EndObject();
  out.Key("repository");
  out.StartObject();
  write_member(out, "name", ev.repository.repo);
  write_member(out, "full_name", ev.repository.full_name());
  out.Key("owner");
  out.StartObject();
  write_member(out, "login", ev.repository.owner);
  write_member(out, "type", to_string(ev.repository.type));
  out.EndObject();
  out.EndObject();
  if (ev.repository.type == owner_type::organization) {
    out.Key("organization");
    out.StartObject();
    write_member(out, "login", ev.repository.owner);
    out.EndObject();
  }
  if (ev.installation_id != 0) {
    out.Key("installation");
    out.StartObject();
    write_member(out, "id", ev.installation_id);
    out.EndObject();
  }
  out.EndObject();
  return {buf.GetString(), buf.GetSize()};
}

} // namespace ghscale
