#pragma once
// What the SQS, EC2 and SSM wire protocols share: where a service answers,
// how a request of the JSON or the query protocol is framed, and what an
// error answer says (JSON or XML), mapped to ghscale's error codes. Pure
// functions: tests call them without a network.
#include "messages/config.hpp"
#include "messages/types.hpp"
#include "transport/sigv4.hpp"

#include <caf/expected.hpp>

#include <rapidjson/document.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ghscale {

/// Where one AWS service answers and what its signatures are scoped to.
struct aws_endpoint {
  std::string url; // "https://sqs.eu-west-1.amazonaws.com/"
  sigv4_scope scope;
};

/// The endpoint of `service` ("sqs", "ec2", "ssm"): the override of
/// `aws_config` if set, else the region's public endpoint (amazonaws.com.cn
/// in the China partition).
aws_endpoint service_endpoint(const aws_config& aws, const std::string& service);

/// An error answer of an AWS API.
struct aws_error {
  int32_t status = 0;
  std::string code;    // "RequestLimitExceeded", "QueueDoesNotExist", ...
  std::string message; // AWS's text (names resources, never our secrets)
  /// The service asked us to slow down.
  bool throttled() const;
  /// Throttling and 5xx: the same request may succeed later.
  bool retryable() const;
};

/// The error of a JSON-protocol answer (SQS, SSM): `__type` (possibly
/// "com.amazonaws.sqs#Code"), `message` or `Message`, and the
/// x-amzn-query-error header ("Code;Sender").
aws_error parse_json_error(int32_t status, const std::vector<http_header>& headers,
                           std::string_view body);
/// The error of a query-protocol answer (EC2's
/// <Response><Errors><Error><Code>, or an <ErrorResponse>).
aws_error parse_xml_error(int32_t status, std::string_view body);
/// The error an answer carries, whichever protocol framed it; none for 2xx.
std::optional<aws_error> parse_aws_error(const http_response& res);

/// The ghscale error for `err`: throttled, backend_failure (5xx),
/// not_found, or rejected; the context is "<what>: <Code>: <message>".
caf::error to_error(const aws_error& err, const std::string& what);

/// A POST of the AWS JSON protocol (`json_version` "1.0" for SQS, "1.1" for
/// SSM); `target` is X-Amz-Target, e.g. "AmazonSQS.ReceiveMessage".
http_request aws_json_request(const aws_endpoint& ep, std::string_view json_version,
                              std::string target, std::string body,
                              caf::timespan timeout);

/// A POST of the query protocol (EC2): `params` after Action and Version,
/// form-encoded.
using query_params = std::vector<std::pair<std::string, std::string>>;
http_request aws_query_request(const aws_endpoint& ep, const std::string& action,
                               const std::string& version, query_params params,
                               caf::timespan timeout);

/// Parses a JSON answer body (an object) into `out`; the error names `what`.
caf::error parse_json_body(std::string_view body, const std::string& what,
                           rapidjson::Document& out);

/// The string member `name` of a JSON object, or "" if absent or no string.
std::string json_string(const rapidjson::Value& obj, const char* name);

/// A malformed answer: errc::backend_failure with "what: why".
caf::error malformed_answer(const std::string& what, const std::string& why);

} // namespace ghscale
