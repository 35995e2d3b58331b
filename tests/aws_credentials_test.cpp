// The AWS credential chain: environment, shared files and IMDSv2 shapes as
// pure functions, then the provider actor on the deterministic scheduler
// with a mock HTTP engine playing the instance metadata service.
#include "actors/clients/aws_credentials_provider.hpp"
#include "transport/aws_credentials.hpp"
#include "transport/wall_clock.hpp"

#include "tests/actor_test.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <unistd.h>
#include <vector>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

constexpr const char* env_secret = "env-secret-DO-NOT-LEAK";
constexpr const char* file_secret = "file-secret-DO-NOT-LEAK";
constexpr const char* imds_secret = "imds-secret-DO-NOT-LEAK";

env_lookup fake_env(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](const std::string& name) -> std::optional<std::string> {
    auto i = vars.find(name);
    if (i == vars.end())
      return std::nullopt;
    return i->second;
  };
}

std::string message_of(const caf::error& err) {
  return describe(err);
}

// -- environment ---------------------------------------------------------------

TEST(AwsEnvironment, AbsentIsNotFound) {
  auto creds = credentials_from_environment(fake_env({}));
  ASSERT_FALSE(creds);
  EXPECT_EQ(creds.error(), errc::not_found);
  EXPECT_EQ(message_of(creds.error()),
            "not_found: environment: AWS_ACCESS_KEY_ID not set");
}

TEST(AwsEnvironment, KeyPairWithAndWithoutSessionToken) {
  auto creds = credentials_from_environment(
    fake_env({{"AWS_ACCESS_KEY_ID", "AKIAENV"}, {"AWS_SECRET_ACCESS_KEY", env_secret}}));
  ASSERT_TRUE(creds);
  EXPECT_EQ(creds->access_key_id, "AKIAENV");
  EXPECT_EQ(creds->secret_access_key.value, env_secret);
  EXPECT_TRUE(creds->session_token.empty());
  EXPECT_EQ(creds->expires_at, caf::timespan{0});
  EXPECT_EQ(creds->source, "environment");
  auto session = credentials_from_environment(
    fake_env({{"AWS_ACCESS_KEY_ID", "ASIAENV"},
              {"AWS_SECRET_ACCESS_KEY", env_secret},
              {"AWS_SESSION_TOKEN", "env-token"},
              {"AWS_CREDENTIAL_EXPIRATION", "2026-11-22T14:00:00Z"}}));
  ASSERT_TRUE(session);
  EXPECT_EQ(session->session_token.value, "env-token");
  EXPECT_EQ(session->expires_at, *parse_rfc3339("2026-11-22T14:00:00Z"));
}

TEST(AwsEnvironment, HalfAPairIsAConfigurationErrorWithoutTheSecret) {
  auto only_secret = credentials_from_environment(
    fake_env({{"AWS_SECRET_ACCESS_KEY", env_secret}, {"AWS_ACCESS_KEY_ID", ""}}));
  ASSERT_FALSE(only_secret);
  EXPECT_EQ(only_secret.error(), errc::invalid_config);
  EXPECT_EQ(message_of(only_secret.error()),
            "invalid_config: environment: AWS_ACCESS_KEY_ID not set but "
            "AWS_SECRET_ACCESS_KEY is");
  auto only_id = credentials_from_environment(fake_env({{"AWS_ACCESS_KEY_ID", "AKIA"}}));
  ASSERT_FALSE(only_id);
  EXPECT_EQ(only_id.error(), errc::invalid_config);
  auto bad_expiry = credentials_from_environment(
    fake_env({{"AWS_ACCESS_KEY_ID", "AKIA"},
              {"AWS_SECRET_ACCESS_KEY", env_secret},
              {"AWS_CREDENTIAL_EXPIRATION", "tomorrow"}}));
  ASSERT_FALSE(bad_expiry);
  EXPECT_EQ(bad_expiry.error(), errc::invalid_config);
  EXPECT_EQ(message_of(bad_expiry.error()).find(env_secret), std::string::npos);
}

// -- shared files ----------------------------------------------------------------

const std::string credentials_file = R"(# shared credentials
[default]
aws_access_key_id = AKIADEFAULT
aws_secret_access_key = default-secret

; a comment
[ci]
	# an indented comment
AWS_Access_Key_ID=AKIACI
aws_secret_access_key   =   ci-secret   
aws_session_token = ci-token
[half]
aws_access_key_id = AKIAHALF
)";

const std::string config_file = "[default]\r\n"
                                "region = eu-west-1\r\n"
                                "[profile dev]\r\n"
                                "aws_access_key_id = AKIADEV\r\n"
                                "aws_secret_access_key = dev-secret\r\n"
                                "s3 =\r\n"
                                "  max_concurrent_requests = 20\r\n"
                                "[profile ci]\r\n"
                                "aws_access_key_id = AKIASHADOWED\r\n"
                                "aws_secret_access_key = shadowed-secret\r\n"
                                "[dev]\r\n"
                                "aws_access_key_id = AKIANOTAPROFILE\r\n"
                                "aws_secret_access_key = wrong\r\n";

TEST(AwsProfile, DefaultFromTheCredentialsFile) {
  auto creds = credentials_from_profile(credentials_file, config_file, "default");
  ASSERT_TRUE(creds) << message_of(creds.error());
  EXPECT_EQ(creds->access_key_id, "AKIADEFAULT");
  EXPECT_EQ(creds->secret_access_key.value, "default-secret");
  EXPECT_TRUE(creds->session_token.empty());
  EXPECT_EQ(creds->source, "profile 'default'");
}

TEST(AwsProfile, NamedWithSessionTokenCommentsAndWhitespace) {
  auto creds = credentials_from_profile(credentials_file, config_file, "ci");
  ASSERT_TRUE(creds) << message_of(creds.error());
  // The credentials file wins over the config file's [profile ci].
  EXPECT_EQ(creds->access_key_id, "AKIACI");
  EXPECT_EQ(creds->secret_access_key.value, "ci-secret");
  EXPECT_EQ(creds->session_token.value, "ci-token");
}

TEST(AwsProfile, ConfigFileOnlyUsesProfilePrefixedSections) {
  auto creds = credentials_from_profile("", config_file, "dev");
  ASSERT_TRUE(creds) << message_of(creds.error());
  EXPECT_EQ(creds->access_key_id, "AKIADEV");
  EXPECT_EQ(creds->secret_access_key.value, "dev-secret");
  auto fallback = credentials_from_profile(credentials_file, config_file, "dev");
  ASSERT_TRUE(fallback);
  EXPECT_EQ(fallback->access_key_id, "AKIADEV");
  auto plain_default = credentials_from_profile(
    "", "[default]\naws_access_key_id=AKIACFG\naws_secret_access_key=cfg\n", "default");
  ASSERT_TRUE(plain_default);
  EXPECT_EQ(plain_default->access_key_id, "AKIACFG");
}

TEST(AwsProfile, MissingOrHalfProfiles) {
  auto missing = credentials_from_profile(credentials_file, config_file, "prod");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), errc::not_found);
  EXPECT_EQ(message_of(missing.error()),
            "not_found: profile 'prod': no keys in the credentials or config file");
  auto empty = credentials_from_profile("", "", "default");
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error(), errc::not_found);
  auto half = credentials_from_profile(credentials_file, config_file, "half");
  ASSERT_FALSE(half);
  EXPECT_EQ(half.error(), errc::invalid_config);
}

TEST(AwsProfile, LocateFollowsTheEnvironment) {
  auto defaults = locate_profile(fake_env({{"HOME", "/home/runner"}}), "");
  EXPECT_EQ(defaults.credentials_path, "/home/runner/.aws/credentials");
  EXPECT_EQ(defaults.config_path, "/home/runner/.aws/config");
  EXPECT_EQ(defaults.profile, "default");
  auto from_env = locate_profile(fake_env({{"HOME", "/h"},
                                           {"AWS_SHARED_CREDENTIALS_FILE", "~/creds"},
                                           {"AWS_CONFIG_FILE", "/etc/aws/config"},
                                           {"AWS_PROFILE", "ci"}}),
                                 "");
  EXPECT_EQ(from_env.credentials_path, "/h/creds");
  EXPECT_EQ(from_env.config_path, "/etc/aws/config");
  EXPECT_EQ(from_env.profile, "ci");
  EXPECT_EQ(locate_profile(fake_env({{"AWS_PROFILE", "ci"}}), "prod").profile, "prod");
}

/// A scratch directory with the two shared files, removed afterwards.
class shared_files {
public:
  shared_files() {
    char pattern[] = "/tmp/ghscale-aws-XXXXXX";
    dir_ = mkdtemp(pattern);
  }
  ~shared_files() {
    std::remove(credentials_path().c_str());
    std::remove(config_path().c_str());
    rmdir(dir_.c_str());
  }
  std::string credentials_path() const { return dir_ + "/credentials"; }
  std::string config_path() const { return dir_ + "/config"; }
  void write_credentials(const std::string& text) const {
    std::ofstream{credentials_path()} << text;
  }

private:
  std::string dir_;
};

TEST(AwsProfile, LoadReadsTheFilesAndNamesThemWhenMissing) {
  shared_files files;
  profile_location where{files.credentials_path(), files.config_path(), "ci"};
  auto none = load_profile(where);
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error(), errc::not_found);
  EXPECT_EQ(message_of(none.error()),
            "not_found: profile 'ci': " + files.credentials_path() + " not found, "
              + files.config_path() + " not found");
  files.write_credentials(credentials_file);
  auto creds = load_profile(where);
  ASSERT_TRUE(creds) << message_of(creds.error());
  EXPECT_EQ(creds->access_key_id, "AKIACI");
  where.profile = "prod";
  auto missing = load_profile(where);
  ASSERT_FALSE(missing);
  EXPECT_EQ(message_of(missing.error()),
            "not_found: profile 'prod': no keys in " + files.credentials_path()
              + " or " + files.config_path() + " (not found)");
}

// -- IMDSv2 shapes -----------------------------------------------------------------

TEST(AwsImds, RequestShapes) {
  auto token = imds_token_request("http://169.254.169.254/", 6h);
  EXPECT_EQ(token.method, "PUT");
  EXPECT_EQ(token.url, "http://169.254.169.254/latest/api/token");
  ASSERT_NE(find_header(token.headers, "x-aws-ec2-metadata-token-ttl-seconds"), nullptr);
  EXPECT_EQ(*find_header(token.headers, "x-aws-ec2-metadata-token-ttl-seconds"), "21600");
  secret_string session{"imds-session"};
  auto role = imds_role_request("http://169.254.169.254", session);
  EXPECT_EQ(role.method, "GET");
  EXPECT_EQ(role.url, "http://169.254.169.254/latest/meta-data/iam/security-credentials/");
  ASSERT_NE(find_header(role.headers, "x-aws-ec2-metadata-token"), nullptr);
  EXPECT_EQ(*find_header(role.headers, "x-aws-ec2-metadata-token"), "imds-session");
  auto creds = imds_credentials_request("http://[fd00:ec2::254]", session, "runner role");
  EXPECT_EQ(creds.method, "GET");
  EXPECT_EQ(creds.url,
            "http://[fd00:ec2::254]/latest/meta-data/iam/security-credentials/runner%20role");
  EXPECT_EQ(*find_header(creds.headers, "x-aws-ec2-metadata-token"), "imds-session");
}

http_response answer(int32_t status, std::string body) {
  http_response r;
  r.status = status;
  r.body.value = std::move(body);
  return r;
}

std::string imds_document(const std::string& key_id, const std::string& expiration) {
  return R"({"Code":"Success","LastUpdated":"2026-11-22T13:00:00Z","Type":"AWS-HMAC",)"
         R"("AccessKeyId":")"
         + key_id + R"(","SecretAccessKey":")" + imds_secret
         + R"(","Token":"imds-token","Expiration":")" + expiration + R"("})";
}

TEST(AwsImds, ParsesTokenRoleAndCredentials) {
  auto token = parse_imds_token(answer(200, "AQAEAtoken==\n"));
  ASSERT_TRUE(token);
  EXPECT_EQ(token->value, "AQAEAtoken==");
  EXPECT_EQ(parse_imds_token(answer(403, "")).error(), errc::rejected);
  auto role = parse_imds_role(answer(200, "\nghscale-runner\nother\n"));
  ASSERT_TRUE(role);
  EXPECT_EQ(*role, "ghscale-runner");
  auto no_role = parse_imds_role(answer(404, "Not Found"));
  ASSERT_FALSE(no_role);
  EXPECT_EQ(no_role.error(), errc::not_found);
  auto creds = parse_imds_credentials(
    answer(200, imds_document("ASIAIMDS", "2026-11-22T19:31:09Z")), "ghscale-runner");
  ASSERT_TRUE(creds) << message_of(creds.error());
  EXPECT_EQ(creds->access_key_id, "ASIAIMDS");
  EXPECT_EQ(creds->secret_access_key.value, imds_secret);
  EXPECT_EQ(creds->session_token.value, "imds-token");
  EXPECT_EQ(creds->expires_at, *parse_rfc3339("2026-11-22T19:31:09Z"));
  EXPECT_EQ(creds->source, "imds role ghscale-runner");
}

TEST(AwsImds, BadCredentialDocumentsNeverShowTheBody) {
  for (const auto& r :
       {answer(500, imds_document("ASIA", "2026-11-22T19:31:09Z")),
        answer(200, "{\"Code\":\"Failure\",\"SecretAccessKey\":\""
                      + std::string{imds_secret} + "\"}"),
        answer(200, imds_document("", "2026-11-22T19:31:09Z")),
        answer(200, imds_document("ASIA", "soon")), answer(200, "not json")}) {
    auto creds = parse_imds_credentials(r, "role");
    ASSERT_FALSE(creds);
    EXPECT_EQ(message_of(creds.error()).find(imds_secret), std::string::npos)
      << message_of(creds.error());
  }
}

// -- the provider actor ----------------------------------------------------------

std::string rfc3339(caf::timespan since_epoch) {
  auto secs = static_cast<std::time_t>(
    std::chrono::duration_cast<std::chrono::seconds>(since_epoch).count());
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

/// The instance metadata service as the mock engine plays it.
struct imds_world {
  std::string role = "ghscale-runner";
  caf::timespan lifetime = 60min; // of each credential handed out
  bool silent = false;            // never answer (the caller times out)
  int32_t credentials_status = 200;
  int32_t issued = 0;             // credentials handed out so far
  std::vector<std::string> calls; // "METHOD url"
  std::vector<std::string> problems; // malformed requests seen
  std::vector<caf::typed_response_promise<http_response>> held;

  http_response serve(const http_request& req) {
    calls.push_back(req.method + " " + req.url);
    const std::string base = "http://imds.test/latest/";
    if (req.url == base + "api/token") {
      if (req.method != "PUT"
          || find_header(req.headers, "x-aws-ec2-metadata-token-ttl-seconds") == nullptr)
        problems.push_back("bad token request");
      return answer(200, "session-token");
    }
    auto* token = find_header(req.headers, "x-aws-ec2-metadata-token");
    if (token == nullptr || *token != "session-token")
      problems.push_back("no session token on " + req.url);
    auto listing = base + "meta-data/iam/security-credentials/";
    if (req.url == listing)
      return answer(200, role + "\n");
    if (req.url == listing + role) {
      if (credentials_status != 200)
        return answer(credentials_status, "");
      ++issued;
      return answer(200, imds_document("ASIA" + std::to_string(issued),
                                       rfc3339(wall_now() + lifetime)));
    }
    return answer(404, "");
  }
};
using world_ptr = std::shared_ptr<imds_world>;

class AwsCredentialsProviderTest : public test::actor_test {
protected:
  ~AwsCredentialsProviderTest() override {
    world->held.clear();
  }

  /// Whatever happened, no secret reached a log line.
  void TearDown() override {
    for (const auto& line : logs.lines())
      for (auto secret : {env_secret, file_secret, imds_secret, "session-token",
                          "imds-token"})
        EXPECT_EQ(line.find(secret), std::string::npos) << line;
  }

  http_actor mock_imds() {
    auto behavior = [](http_actor::pointer mock, world_ptr w) -> http_actor::behavior_type {
      return {
        [=](atom::http, http_request req) -> caf::result<http_response> {
          if (w->silent) {
            w->calls.push_back(req.method + " " + req.url);
            auto rp = mock->make_response_promise<http_response>();
            w->held.push_back(rp);
            return rp;
          }
          return w->serve(req);
        },
      };
    };
    return sys.spawn(behavior, world);
  }

  aws_credentials_actor provider(std::map<std::string, std::string> vars) {
    vars.emplace("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://imds.test");
    vars.emplace("AWS_SHARED_CREDENTIALS_FILE", files.credentials_path());
    vars.emplace("AWS_CONFIG_FILE", files.config_path());
    return stop_at_teardown(sys.spawn(aws_credentials_provider, fake_env(vars),
                                      mock_imds(), aws_credentials_options{}));
  }

  caf::expected<aws_credentials> ask_creds(const aws_credentials_actor& p) {
    auto slot = spawn_requester<aws_credentials>(p, 30s, atom::credentials_v);
    advance(3s);
    if (!slot->has_value())
      return caf::make_error(caf::sec::bad_function_call);
    return **slot;
  }

  world_ptr world = std::make_shared<imds_world>();
  shared_files files;
  test::log_capture logs;
};

TEST_F(AwsCredentialsProviderTest, ChainPrefersEnvironmentThenProfileThenImds) {
  auto from_env = ask_creds(provider({{"AWS_ACCESS_KEY_ID", "AKIAENV"},
                                      {"AWS_SECRET_ACCESS_KEY", env_secret}}));
  ASSERT_TRUE(from_env) << message_of(from_env.error());
  EXPECT_EQ(from_env->source, "environment");
  files.write_credentials("[default]\naws_access_key_id=AKIAFILE\n"
                          "aws_secret_access_key=" + std::string{file_secret} + "\n");
  auto from_file = ask_creds(provider({}));
  ASSERT_TRUE(from_file) << message_of(from_file.error());
  EXPECT_EQ(from_file->access_key_id, "AKIAFILE");
  EXPECT_EQ(from_file->source, "profile 'default'");
  EXPECT_TRUE(world->calls.empty());
  auto from_imds = ask_creds(provider({{"AWS_PROFILE", "elsewhere"}}));
  ASSERT_TRUE(from_imds) << message_of(from_imds.error());
  EXPECT_EQ(from_imds->access_key_id, "ASIA1");
  EXPECT_EQ(from_imds->secret_access_key.value, imds_secret);
  EXPECT_EQ(from_imds->session_token.value, "imds-token");
  EXPECT_EQ(from_imds->source, "imds role ghscale-runner");
  EXPECT_EQ(world->calls,
            (std::vector<std::string>{
              "PUT http://imds.test/latest/api/token",
              "GET http://imds.test/latest/meta-data/iam/security-credentials/",
              "GET http://imds.test/latest/meta-data/iam/security-credentials/"
              "ghscale-runner"}));
  EXPECT_TRUE(world->problems.empty()) << world->problems.front();
}

TEST_F(AwsCredentialsProviderTest, CachesAndResolvesOnceForConcurrentAsks) {
  auto p = provider({});
  std::vector<test::reply_slot<aws_credentials>> slots;
  for (int i = 0; i < 5; ++i)
    slots.push_back(spawn_requester<aws_credentials>(p, 30s, atom::credentials_v));
  advance(1s);
  for (auto& slot : slots) {
    ASSERT_TRUE(slot->has_value());
    ASSERT_TRUE(**slot) << message_of((*slot)->error());
    EXPECT_EQ((**slot)->access_key_id, "ASIA1");
  }
  EXPECT_EQ(world->calls.size(), 3u);
  auto cached = ask_creds(p);
  ASSERT_TRUE(cached);
  EXPECT_EQ(cached->access_key_id, "ASIA1");
  EXPECT_EQ(world->calls.size(), 3u);
}

TEST_F(AwsCredentialsProviderTest, RefreshesAheadOfExpiryOnTheActorClock) {
  auto p = provider({});
  ASSERT_TRUE(ask_creds(p));
  EXPECT_EQ(world->issued, 1);
  // Valid for 60 minutes, refreshed 5 minutes before: not at 54.
  advance(54min);
  EXPECT_EQ(world->issued, 1);
  advance(2min);
  EXPECT_EQ(world->issued, 2);
  EXPECT_EQ(world->calls.size(), 6u);
  auto fresh = ask_creds(p);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->access_key_id, "ASIA2");
  // And again for the refreshed credentials.
  advance(56min);
  EXPECT_EQ(world->issued, 3);
  EXPECT_EQ(logs.lines_containing("aws credentials resolved"), 3u);
}

TEST_F(AwsCredentialsProviderTest, FailedRefreshKeepsServingAndRetries) {
  auto p = provider({});
  ASSERT_TRUE(ask_creds(p));
  world->credentials_status = 500;
  advance(56min); // the refresh at 55 fails
  EXPECT_EQ(world->issued, 1);
  auto still = ask_creds(p);
  ASSERT_TRUE(still) << message_of(still.error());
  EXPECT_EQ(still->access_key_id, "ASIA1");
  auto calls = world->calls.size();
  world->credentials_status = 200;
  advance(10s); // retry_after_failure
  EXPECT_GT(world->calls.size(), calls);
  EXPECT_EQ(world->issued, 2);
  auto fresh = ask_creds(p);
  ASSERT_TRUE(fresh);
  EXPECT_EQ(fresh->access_key_id, "ASIA2");
}

TEST_F(AwsCredentialsProviderTest, ExpiredCredentialsAreNotServedAfterFailures) {
  auto p = provider({});
  ASSERT_TRUE(ask_creds(p));
  world->credentials_status = 503;
  advance(61min);
  auto expired = ask_creds(p);
  ASSERT_FALSE(expired);
  EXPECT_EQ(expired.error(), errc::invalid_config);
  EXPECT_NE(message_of(expired.error()).find("HTTP 503"), std::string::npos)
    << message_of(expired.error());
}

TEST_F(AwsCredentialsProviderTest, FailureListsEverySourceWithoutSecrets) {
  world->silent = true;
  auto p = provider({{"HOME", "/nonexistent"}});
  auto slot = spawn_requester<aws_credentials>(p, 30s, atom::credentials_v);
  advance(1s);
  EXPECT_FALSE(slot->has_value()); // still waiting for IMDS
  advance(2s);
  ASSERT_TRUE(slot->has_value());
  ASSERT_FALSE(**slot);
  EXPECT_EQ((*slot)->error(), errc::invalid_config);
  EXPECT_EQ(message_of((*slot)->error()),
            "invalid_config: no AWS credentials: environment: AWS_ACCESS_KEY_ID not "
            "set; profile 'default': " + files.credentials_path() + " not found, "
              + files.config_path() + " not found; IMDS http://imds.test: timeout");
}

TEST_F(AwsCredentialsProviderTest, MisconfiguredEnvironmentStopsTheChain) {
  auto failed = ask_creds(provider({{"AWS_SECRET_ACCESS_KEY", env_secret}}));
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error(), errc::invalid_config);
  auto text = message_of(failed.error());
  EXPECT_EQ(text.find(env_secret), std::string::npos) << text;
  EXPECT_NE(text.find("AWS_ACCESS_KEY_ID not set but AWS_SECRET_ACCESS_KEY is"),
            std::string::npos)
    << text;
  EXPECT_TRUE(world->calls.empty());
}

TEST_F(AwsCredentialsProviderTest, ImdsCanBeDisabled) {
  auto failed = ask_creds(provider({{"AWS_EC2_METADATA_DISABLED", "TRUE"}}));
  ASSERT_FALSE(failed);
  EXPECT_NE(message_of(failed.error())
              .find("IMDS: disabled by AWS_EC2_METADATA_DISABLED"),
            std::string::npos);
  EXPECT_TRUE(world->calls.empty());
}

TEST_F(AwsCredentialsProviderTest, InstanceWithoutRoleIsReported) {
  world->role = "";
  auto failed = ask_creds(provider({}));
  ASSERT_FALSE(failed);
  EXPECT_NE(message_of(failed.error())
              .find("IMDS http://imds.test: no IAM role attached to this instance"),
            std::string::npos)
    << message_of(failed.error());
}

} // namespace
