#pragma once
// AWS Signature Version 4 (AWS4-HMAC-SHA256) on OpenSSL's HMAC and SHA-256,
// checked against the AWS SigV4 test suite and botocore's signer.
#include "messages/types.hpp"

#include <caf/timespan.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace ghscale {

/// Where a signature is valid: "us-east-1" / "sqs".
struct sigv4_scope {
  std::string region;
  std::string service;
};

/// Every intermediate of a signature, so tests can compare each step.
struct sigv4_result {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signature; // lower-case hex
  std::string authorization; // the Authorization header's value
};

/// The pieces of a signature for a raw request (as the AWS SigV4 test suite
/// gives it): signs exactly `headers` (which must already carry host and
/// x-amz-date), `path` as written in the request line and the raw `query`.
sigv4_result sigv4(std::string_view method, std::string_view path,
                   std::string_view query,
                   const std::vector<http_header>& headers,
                   std::string_view payload, const aws_credentials& creds,
                   const sigv4_scope& scope, caf::timespan wall_time);

/// Signs an http_request in place at wall time `now`: sets host (url
/// authority), x-amz-date, x-amz-security-token when creds carry a session
/// token, and authorization, replacing those of an earlier signature (a
/// retried request is signed again); signs every header present except the
/// hop-by-hop ones and user-agent, which proxies may rewrite (as botocore).
/// The URL must be valid (clients build it from a validated endpoint):
/// throws std::invalid_argument otherwise.
void sign_request(http_request& req, const aws_credentials& creds,
                  const sigv4_scope& scope, caf::timespan now);

} // namespace ghscale
