#include "transport/aws_credentials.hpp"
#include "transport/json.hpp"

#include "messages/text.hpp"
#include "transport/files.hpp"
#include "transport/url.hpp"
#include "transport/wall_clock.hpp"

#include <rapidjson/document.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <map>
#include <sstream>

namespace ghscale {

namespace {

using ini_section = std::map<std::string, std::string>;
using ini_file = std::map<std::string, ini_section>;

constexpr std::string_view whitespace = " \t\r\n";
constexpr std::string_view security_credentials_path
  = "/latest/meta-data/iam/security-credentials/";

/// "profile   dev" -> "profile dev": the config file's section names.
std::string section_name(std::string_view text) {
  auto name = trim_space(text);
  constexpr std::string_view prefix = "profile";
  if (name.size() > prefix.size() && name.substr(0, prefix.size()) == prefix
      && whitespace.find(name[prefix.size()]) != std::string_view::npos)
    return "profile " + std::string{trim_space(name.substr(prefix.size()))};
  return std::string{name};
}

/// The subset of INI the AWS files use: [sections], key = value, full-line
/// # and ; comments; keys are case-insensitive; indented lines continue a
/// nested value and are skipped (no key of ours is nested).
ini_file parse_ini(std::string_view text) {
  ini_file out;
  ini_section* current = nullptr;
  std::istringstream lines{std::string{text}};
  std::string raw;
  while (std::getline(lines, raw)) {
    auto line = trim_space(raw);
    if (line.empty() || line.front() == '#' || line.front() == ';'
        || whitespace.find(raw.front()) != std::string_view::npos)
      continue;
    if (line.front() == '[' && line.back() == ']') {
      current = &out[section_name(line.substr(1, line.size() - 2))];
      continue;
    }
    auto eq = line.find('=');
    if (current != nullptr && eq != std::string_view::npos)
      (*current)[ascii_lower(trim_space(line.substr(0, eq)))]
        = std::string{trim_space(line.substr(eq + 1))};
  }
  return out;
}

const ini_section* find_section(const ini_file& file, const std::string& name) {
  auto i = file.find(name);
  return i == file.end() ? nullptr : &i->second;
}

std::optional<std::string> value_of(const ini_section& section,
                                    const std::string& key) {
  auto i = section.find(key);
  if (i == section.end() || i->second.empty())
    return std::nullopt;
  return i->second;
}

/// The keys of one section: not_found without any, invalid_config with half.
caf::expected<aws_credentials> keys_of(const ini_section* section,
                                       const std::string& where) {
  auto id = section ? value_of(*section, "aws_access_key_id") : std::nullopt;
  auto secret = section ? value_of(*section, "aws_secret_access_key")
                        : std::nullopt;
  if (!id && !secret)
    return caf::make_error(errc::not_found, where + ": no keys");
  if (!id || !secret)
    return caf::make_error(errc::invalid_config,
                           where + ": has "
                             + (id ? "aws_access_key_id but no aws_secret_access_key"
                                   : "aws_secret_access_key but no aws_access_key_id"));
  aws_credentials out;
  out.access_key_id = *id;
  out.secret_access_key.value = *secret;
  out.session_token.value = value_of(*section, "aws_session_token").value_or("");
  return out;
}

std::string expand_home(const std::string& path, const env_lookup& env) {
  auto home = env("HOME");
  if (!path.empty() && path.front() == '~' && home)
    return *home + path.substr(1);
  return path;
}

std::string strip_trailing_slash(std::string endpoint) {
  while (!endpoint.empty() && endpoint.back() == '/')
    endpoint.pop_back();
  return endpoint;
}

http_request imds_get(const std::string& endpoint, const secret_string& token,
                      const std::string& path) {
  http_request req;
  req.method = "GET";
  req.url = strip_trailing_slash(endpoint) + path;
  req.headers.push_back({"x-aws-ec2-metadata-token", token.value});
  return req;
}

/// The error for a non-200 answer; the body is never shown (it may hold keys).
caf::error imds_status_error(const http_response& r, const std::string& what) {
  auto code = r.status == 404                      ? errc::not_found
              : r.status == 401 || r.status == 403 ? errc::rejected
                                                   : errc::backend_failure;
  return caf::make_error(code, what + ": HTTP " + std::to_string(r.status));
}

caf::error bad_imds_document(const std::string& role, const std::string& why) {
  return caf::make_error(errc::backend_failure,
                         "credentials of role '" + role + "': " + why);
}

} // namespace

env_lookup process_environment() {
  return [](const std::string& name) -> std::optional<std::string> {
    if (const char* value = std::getenv(name.c_str()))
      return std::string{value};
    return std::nullopt;
  };
}

caf::expected<aws_credentials> credentials_from_environment(const env_lookup& env) {
  auto non_empty = [&](const char* name) {
    auto value = env(name);
    return value && !value->empty() ? value : std::nullopt;
  };
  auto id = non_empty("AWS_ACCESS_KEY_ID");
  auto secret = non_empty("AWS_SECRET_ACCESS_KEY");
  if (!id && !secret)
    return caf::make_error(errc::not_found, "environment: AWS_ACCESS_KEY_ID not set");
  if (!id || !secret)
    return caf::make_error(errc::invalid_config,
                           std::string{"environment: "}
                             + (id ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID")
                             + " not set but "
                             + (id ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY")
                             + " is");
  aws_credentials out;
  out.access_key_id = *id;
  out.secret_access_key.value = *secret;
  out.session_token.value = non_empty("AWS_SESSION_TOKEN").value_or("");
  out.source = "environment";
  if (auto expiration = non_empty("AWS_CREDENTIAL_EXPIRATION")) {
    auto at = parse_rfc3339(*expiration);
    if (!at)
      return caf::make_error(errc::invalid_config,
                             "environment: AWS_CREDENTIAL_EXPIRATION: "
                               + describe(at.error()));
    out.expires_at = *at;
  }
  return out;
}

caf::expected<aws_credentials> credentials_from_profile(
  std::string_view credentials_file_text, std::string_view config_file_text,
  const std::string& profile) {
  auto where = "profile '" + profile + "'";
  auto from_credentials = keys_of(
    find_section(parse_ini(credentials_file_text), profile),
    where + " in the credentials file");
  if (from_credentials || from_credentials.error() != errc::not_found) {
    if (from_credentials)
      from_credentials->source = where;
    return from_credentials;
  }
  auto config = parse_ini(config_file_text);
  auto* section = find_section(config, "profile " + profile);
  if (section == nullptr && profile == "default")
    section = find_section(config, "default");
  auto from_config = keys_of(section, where + " in the config file");
  if (from_config)
    from_config->source = where;
  else if (from_config.error() == errc::not_found)
    return caf::make_error(errc::not_found,
                           where + ": no keys in the credentials or config file");
  return from_config;
}

profile_location locate_profile(const env_lookup& env,
                                const std::string& configured_profile) {
  profile_location out;
  out.credentials_path = expand_home(
    env("AWS_SHARED_CREDENTIALS_FILE").value_or("~/.aws/credentials"), env);
  out.config_path = expand_home(env("AWS_CONFIG_FILE").value_or("~/.aws/config"),
                                env);
  auto from_env = env("AWS_PROFILE");
  out.profile = !configured_profile.empty()      ? configured_profile
                : from_env && !from_env->empty() ? *from_env
                                                 : "default";
  return out;
}

caf::expected<aws_credentials> load_profile(const profile_location& where) {
  auto credentials_text = read_file(where.credentials_path);
  auto config_text = read_file(where.config_path);
  auto label = "profile '" + where.profile + "': ";
  if (!credentials_text && !config_text)
    return caf::make_error(errc::not_found, label + where.credentials_path
                                              + " not found, " + where.config_path
                                              + " not found");
  auto creds = credentials_from_profile(credentials_text.value_or(""),
                                        config_text.value_or(""), where.profile);
  if (!creds && creds.error() == errc::not_found)
    return caf::make_error(errc::not_found,
                           label + "no keys in " + where.credentials_path
                             + (credentials_text ? "" : " (not found)") + " or "
                             + where.config_path + (config_text ? "" : " (not found)"));
  return creds;
}

http_request imds_token_request(const std::string& endpoint, caf::timespan ttl) {
  http_request req;
  req.method = "PUT";
  req.url = strip_trailing_slash(endpoint) + "/latest/api/token";
  auto seconds = std::chrono::duration_cast<std::chrono::seconds>(ttl).count();
  req.headers.push_back({"x-aws-ec2-metadata-token-ttl-seconds",
                         std::to_string(seconds)});
  return req;
}

http_request imds_role_request(const std::string& endpoint,
                               const secret_string& token) {
  return imds_get(endpoint, token, std::string{security_credentials_path});
}

http_request imds_credentials_request(const std::string& endpoint,
                                      const secret_string& token,
                                      const std::string& role) {
  return imds_get(endpoint, token,
                  std::string{security_credentials_path} + uri_encode(role));
}

caf::expected<secret_string> parse_imds_token(const http_response& r) {
  if (r.status != 200)
    return imds_status_error(r, "token request");
  auto token = trim_space(r.body.value);
  if (token.empty())
    return caf::make_error(errc::backend_failure, "token: empty answer");
  return secret_string{std::string{token}};
}

caf::expected<std::string> parse_imds_role(const http_response& r) {
  if (r.status == 404)
    return caf::make_error(errc::not_found,
                           "no IAM role attached to this instance");
  if (r.status != 200)
    return imds_status_error(r, "role lookup");
  std::istringstream lines{r.body.value};
  std::string line;
  while (std::getline(lines, line))
    if (auto role = trim_space(line); !role.empty())
      return std::string{role};
  return caf::make_error(errc::not_found,
                         "no IAM role attached to this instance");
}

caf::expected<aws_credentials> parse_imds_credentials(const http_response& r,
                                                      const std::string& role) {
  if (r.status != 200)
    return imds_status_error(r, "credentials of role '" + role + "'");
  rapidjson::Document doc;
  parse_outside_json(doc, r.body.value);
  if (doc.HasParseError() || !doc.IsObject())
    return bad_imds_document(role, "not a JSON object");
  auto text = [&](const char* key) -> std::string {
    auto i = doc.FindMember(key);
    return i != doc.MemberEnd() && i->value.IsString() ? i->value.GetString() : "";
  };
  if (auto code = text("Code"); !code.empty() && code != "Success")
    return bad_imds_document(role, "Code " + code);
  aws_credentials out;
  out.access_key_id = text("AccessKeyId");
  out.secret_access_key.value = text("SecretAccessKey");
  out.session_token.value = text("Token");
  if (out.access_key_id.empty() || out.secret_access_key.empty())
    return bad_imds_document(role, "no AccessKeyId or SecretAccessKey");
  auto expiration = parse_rfc3339(text("Expiration"));
  if (!expiration)
    return bad_imds_document(role, "Expiration: " + describe(expiration.error()));
  out.expires_at = *expiration;
  out.source = "imds role " + role;
  return out;
}

} // namespace ghscale
