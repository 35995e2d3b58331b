#pragma once
// The sources of the AWS credential chain as pure functions: environment
// variables, the shared credentials/config files, and the request/response
// shapes of the EC2 instance metadata service (IMDSv2). The only I/O is
// load_profile reading the two files; the provider actor drives the rest.
#include "messages/types.hpp"

#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace ghscale {

/// Reads one environment variable (injectable, so tests need no real env).
using env_lookup = std::function<std::optional<std::string>(const std::string&)>;

/// The process's environment (std::getenv).
env_lookup process_environment();

/// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY[/AWS_SESSION_TOKEN, with
/// AWS_CREDENTIAL_EXPIRATION as RFC 3339]; empty values count as unset.
/// errc::not_found when absent; errc::invalid_config when only one of the
/// pair is set or the expiration does not parse.
caf::expected<aws_credentials> credentials_from_environment(const env_lookup& env);

/// INI texts: [name] in the credentials file, [profile name] (or [default])
/// in the config file; aws_access_key_id, aws_secret_access_key and
/// aws_session_token. A credentials-file profile with keys wins over the
/// config file's. errc::not_found if the profile has no keys;
/// errc::invalid_config if it has only one of the pair.
caf::expected<aws_credentials> credentials_from_profile(
  std::string_view credentials_file_text, std::string_view config_file_text,
  const std::string& profile);

/// Where the shared files are and which profile to read.
struct profile_location {
  std::string credentials_path;
  std::string config_path;
  std::string profile;
};

/// AWS_SHARED_CREDENTIALS_FILE, AWS_CONFIG_FILE (a leading ~ is HOME) or
/// HOME/.aws/{credentials,config}; the profile is `configured_profile`, else
/// AWS_PROFILE, else "default".
profile_location locate_profile(const env_lookup& env,
                                const std::string& configured_profile);

/// Reads both files (a missing one is empty) and picks the profile; errors
/// name the profile and the paths looked at, never a key.
caf::expected<aws_credentials> load_profile(const profile_location& where);

// -- IMDSv2 --------------------------------------------------------------------

/// Token PUT /latest/api/token (x-aws-ec2-metadata-token-ttl-seconds).
http_request imds_token_request(const std::string& endpoint, caf::timespan ttl);
/// GET /latest/meta-data/iam/security-credentials/ (the attached role).
http_request imds_role_request(const std::string& endpoint,
                               const secret_string& token);
/// GET /latest/meta-data/iam/security-credentials/<role>.
http_request imds_credentials_request(const std::string& endpoint,
                                      const secret_string& token,
                                      const std::string& role);

/// Parsers of the three answers. Their errors say which step failed and why
/// (never a body); the caller names the endpoint.
/// The session token of a token response.
caf::expected<secret_string> parse_imds_token(const http_response& r);
/// The first role name listed; errc::not_found without an instance profile.
caf::expected<std::string> parse_imds_role(const http_response& r);
/// JSON AccessKeyId/SecretAccessKey/Token/Expiration (RFC 3339 ->
/// expires_at since the epoch); source "imds role <role>".
caf::expected<aws_credentials> parse_imds_credentials(const http_response& r,
                                                      const std::string& role);

} // namespace ghscale
