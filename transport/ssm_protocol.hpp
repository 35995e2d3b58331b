#pragma once
// SSM Parameter Store on the AWS JSON 1.1 protocol (X-Amz-Target
// AmazonSSM.<Action>): how an instance receives its runner config, and how
// ghscale reads the App's private key. Values are secrets: they travel only
// in request and answer bodies, never in errors.
#include "messages/types.hpp"
#include "transport/aws_protocol.hpp"

#include <caf/expected.hpp>

#include <string>
#include <string_view>

namespace ghscale {

/// PutParameter as a SecureString, encrypted with `kms_key_id` (or the
/// account's default key if empty), with the parameter's tags. Never
/// overwrites: a parameter name is used once.
http_request ssm_put_parameter(const aws_endpoint& ep, const parameter& param,
                               const std::string& kms_key_id,
                               caf::timespan timeout);
/// DeleteParameter.
http_request ssm_delete_parameter(const aws_endpoint& ep, const std::string& name,
                                  caf::timespan timeout);
/// GetParameter with decryption.
http_request ssm_get_parameter(const aws_endpoint& ep, const std::string& name,
                               caf::timespan timeout);
/// The decrypted value of a GetParameter answer.
caf::expected<secret_string> parse_ssm_parameter_value(std::string_view body,
                                                       const std::string& what);

} // namespace ghscale
