#include "transport/aws_protocol.hpp"
#include "transport/json.hpp"

#include "transport/url.hpp"

#include <pugixml.hpp>
#include <rapidjson/error/en.h>

#include <algorithm>
#include <array>

namespace ghscale {

namespace {

/// AWS's messages name resources; a few hundred characters say enough.
constexpr size_t max_message_chars = 300;

/// The codes AWS services use to say "slow down" (botocore's list, plus
/// EC2's own).
constexpr std::array<std::string_view, 9> throttling_codes{
  "RequestLimitExceeded",    "Throttling",
  "ThrottlingException",     "ThrottledException",
  "RequestThrottled",        "TooManyRequestsException",
  "ProvisionedThroughputExceededException", "SlowDown",
  "EC2ThrottledException",
};

bool contains(std::string_view text, std::string_view part) {
  return text.find(part) != std::string_view::npos;
}

bool names_missing_resource(const aws_error& err) {
  return err.status == 404 || contains(err.code, "NotFound")
         || contains(err.code, "DoesNotExist") || contains(err.code, "NonExistent");
}

std::string status_code(int32_t status) {
  return "HTTP " + std::to_string(status);
}

/// "com.amazonaws.sqs#QueueDoesNotExist" -> "QueueDoesNotExist".
std::string short_type(std::string_view type) {
  auto hash = type.rfind('#');
  if (hash != std::string_view::npos)
    type.remove_prefix(hash + 1);
  // Some services append ":http://internal..." to the type.
  return std::string{type.substr(0, type.find(':'))};
}

std::string trimmed(std::string text) {
  if (text.size() > max_message_chars)
    text.resize(max_message_chars);
  return text;
}

} // namespace

aws_endpoint service_endpoint(const aws_config& aws, const std::string& service) {
  aws_endpoint ep;
  ep.scope = sigv4_scope{aws.region, service};
  const std::string* override_url = nullptr;
  if (service == "sqs")
    override_url = &aws.sqs_endpoint;
  else if (service == "ec2")
    override_url = &aws.ec2_endpoint;
  else if (service == "ssm")
    override_url = &aws.ssm_endpoint;
  if (override_url != nullptr && !override_url->empty()) {
    ep.url = *override_url;
    return ep;
  }
  auto china = aws.region.rfind("cn-", 0) == 0;
  ep.url = "https://" + service + "." + aws.region
           + (china ? ".amazonaws.com.cn/" : ".amazonaws.com/");
  return ep;
}

bool aws_error::throttled() const {
  return std::find(throttling_codes.begin(), throttling_codes.end(), code)
         != throttling_codes.end();
}

bool aws_error::retryable() const {
  return throttled() || status >= 500;
}

aws_error parse_json_error(int32_t status, const std::vector<http_header>& headers,
                           std::string_view body) {
  aws_error err;
  err.status = status;
  rapidjson::Document doc;
  parse_outside_json(doc, body);
  if (!doc.HasParseError() && doc.IsObject()) {
    err.code = short_type(json_string(doc, "__type"));
    err.message = json_string(doc, "message");
    if (err.message.empty())
      err.message = json_string(doc, "Message");
  }
  // Services that moved from the query protocol (SQS) name the code their
  // query API used in this header; botocore prefers it, and so do we.
  if (auto query_error = find_header(headers, "x-amzn-query-error")) {
    auto code = query_error->substr(0, query_error->find(';'));
    if (!code.empty())
      err.code = code;
  }
  if (err.code.empty())
    err.code = status_code(status);
  err.message = trimmed(std::move(err.message));
  return err;
}

aws_error parse_xml_error(int32_t status, std::string_view body) {
  aws_error err;
  err.status = status;
  pugi::xml_document doc;
  if (doc.load_buffer(body.data(), body.size())) {
    if (auto error = doc.select_node("//Error").node()) {
      err.code = error.child_value("Code");
      err.message = trimmed(error.child_value("Message"));
    }
  }
  if (err.code.empty())
    err.code = status_code(status);
  return err;
}

std::optional<aws_error> parse_aws_error(const http_response& res) {
  if (res.status >= 200 && res.status < 300)
    return std::nullopt;
  const auto& body = res.body.value;
  auto first = body.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && body[first] == '<')
    return parse_xml_error(res.status, body);
  return parse_json_error(res.status, res.headers, body);
}

caf::error to_error(const aws_error& err, const std::string& what) {
  auto context = what + ": " + err.code;
  if (!err.message.empty())
    context += ": " + err.message;
  if (err.throttled())
    return caf::make_error(errc::throttled, std::move(context));
  if (err.status >= 500)
    return caf::make_error(errc::backend_failure, std::move(context));
  if (names_missing_resource(err))
    return caf::make_error(errc::not_found, std::move(context));
  return caf::make_error(errc::rejected, std::move(context));
}

http_request aws_json_request(const aws_endpoint& ep, std::string_view json_version,
                              std::string target, std::string body,
                              caf::timespan timeout) {
  http_request req;
  req.method = "POST";
  req.url = ep.url;
  req.headers = {
    {"content-type", "application/x-amz-json-" + std::string{json_version}},
    {"x-amz-target", std::move(target)},
  };
  req.body.value = std::move(body);
  req.timeout = timeout;
  return req;
}

http_request aws_query_request(const aws_endpoint& ep, const std::string& action,
                               const std::string& version, query_params params,
                               caf::timespan timeout) {
  query_params form{{"Action", action}, {"Version", version}};
  form.insert(form.end(), std::make_move_iterator(params.begin()),
              std::make_move_iterator(params.end()));
  http_request req;
  req.method = "POST";
  req.url = ep.url;
  req.headers = {
    {"content-type", "application/x-www-form-urlencoded; charset=utf-8"},
  };
  req.body.value = form_encode(form);
  req.timeout = timeout;
  return req;
}

caf::error parse_json_body(std::string_view body, const std::string& what,
                           rapidjson::Document& out) {
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    out.SetObject(); // an action without output may answer nothing
    return caf::none;
  }
  parse_outside_json(out, body);
  if (out.HasParseError())
    return malformed_answer(what, std::string{rapidjson::GetParseError_En(
                                    out.GetParseError())}
                                    + " at offset "
                                    + std::to_string(out.GetErrorOffset()));
  if (!out.IsObject())
    return malformed_answer(what, "not a JSON object");
  return caf::none;
}

std::string json_string(const rapidjson::Value& obj, const char* name) {
  auto i = obj.FindMember(name);
  if (i == obj.MemberEnd() || !i->value.IsString())
    return {};
  return {i->value.GetString(), i->value.GetStringLength()};
}

caf::error malformed_answer(const std::string& what, const std::string& why) {
  return caf::make_error(errc::backend_failure, what + ": malformed answer: " + why);
}

} // namespace ghscale
