#include "transport/workflow_job.hpp"
#include "transport/wall_clock.hpp"

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

using namespace ghscale;

namespace {

std::string read_fixture(const std::string& name) {
  std::ifstream in{std::string{GHSCALE_SOURCE_DIR} + "/tests/data/" + name,
                   std::ios::binary};
  if (!in)
    throw std::runtime_error("missing fixture " + name);
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// Compares every field, and prints both events when they differ.
caf::timespan unix_time(const char* rfc3339_text) {
  auto t = parse_rfc3339(rfc3339_text);
  EXPECT_TRUE(t);
  return t ? *t : caf::timespan{0};
}

void expect_same(const job_event& expected, const caf::expected<job_event>& got) {
  ASSERT_TRUE(got) << context_of(got.error());
  EXPECT_EQ(caf::deep_to_string(*got), caf::deep_to_string(expected));
}

job_event queued_fixture_event() {
  job_event ev;
  ev.action = job_action::queued;
  ev.key = {29679449, 2};
  ev.run_id = 10208497425;
  ev.repository = {"octo-org", "octo-repo", owner_type::organization};
  ev.installation_id = 3456996;
  ev.labels = {"self-hosted", "linux", "x64", "gpu"};
  ev.created_at = unix_time("2024-08-01T09:15:02Z");
  ev.started_at = ev.created_at;
  return ev;
}

job_event sample_event() {
  job_event ev;
  ev.action = job_action::queued;
  ev.key = {4242, 1};
  ev.run_id = 77;
  ev.repository = {"acme", "widgets", owner_type::organization};
  ev.installation_id = 12;
  ev.labels = {"self-hosted", "Linux", "ARM64"};
  return ev;
}

/// `fixture` in the EventBridge envelope that a GitHub -> EventBridge
/// integration produces (the payload unchanged as `detail`).
std::string eventbridge_envelope(const std::string& payload) {
  return R"({"version":"0","id":"4b8ee2a1-6c1e-4f3e-9d3c-3a3c3f2c1b0a",)"
         R"("detail-type":"workflow_job","source":"github.com",)"
         R"("account":"123456789012","time":"2024-08-01T09:15:03Z",)"
         R"("region":"eu-west-1","resources":[],"detail":)"
         + payload + "}";
}

} // namespace

// -- webhook payloads ------------------------------------------------------------

TEST(WorkflowJob, DocumentedQueuedPayloadParses) {
  expect_same(queued_fixture_event(),
              parse_job_event(read_fixture("workflow_job_queued.json")));
}

TEST(WorkflowJob, InProgressCarriesRunnerAndUserOwner) {
  job_event ev;
  ev.action = job_action::in_progress;
  ev.key = {30117702, 1};
  ev.run_id = 10311223344;
  ev.repository = {"octocat", "hello-world", owner_type::user};
  ev.installation_id = 5120448;
  ev.labels = {"self-hosted", "Linux", "ARM64"};
  ev.runner_name = "ghscale-i-0a1b2c3d4e5f60718";
  ev.created_at = unix_time("2024-08-07T14:01:10Z");
  ev.started_at = unix_time("2024-08-07T14:01:55Z");
  expect_same(ev, parse_job_event(read_fixture("workflow_job_in_progress.json")));
}

TEST(WorkflowJob, CompletedCarriesRunner) {
  auto ev = queued_fixture_event();
  ev.action = job_action::completed;
  ev.runner_name = "ghscale-i-0f00dbabe12345678";
  ev.started_at = unix_time("2024-08-01T09:15:49Z");
  expect_same(ev, parse_job_event(read_fixture("workflow_job_completed.json")));
}

TEST(WorkflowJob, TimesRoundTripAndBadTimesAreMalformed) {
  auto ev = sample_event();
  ev.action = job_action::in_progress;
  ev.created_at = unix_time("2026-11-22T10:00:00Z");
  ev.started_at = unix_time("2026-11-22T10:00:42Z");
  expect_same(ev, parse_job_event(to_webhook_payload(ev)));
  auto body = to_webhook_payload(ev);
  body.replace(body.find("2026-11-22T10:00:42Z"), 20, "yesterday at noon...");
  auto bad = parse_job_event(body);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), errc::malformed_event);
  EXPECT_NE(context_of(bad.error()).find("workflow_job.started_at"), std::string::npos)
    << context_of(bad.error());
}

TEST(WorkflowJob, WaitingActionIsAccepted) {
  auto ev = sample_event();
  ev.action = job_action::waiting;
  expect_same(ev, parse_job_event(to_webhook_payload(ev)));
}

TEST(WorkflowJob, MissingRunAttemptMeansFirstAttempt) {
  auto body = R"({"action":"queued","workflow_job":{"id":5,"run_id":6,)"
              R"("labels":["x"],"runner_name":null},"repository":{"name":"r",)"
              R"("owner":{"login":"o","type":"User"}}})";
  job_event ev;
  ev.key = {5, 1};
  ev.run_id = 6;
  ev.repository = {"o", "r", owner_type::user};
  ev.labels = {"x"};
  expect_same(ev, parse_job_event(body));
}

TEST(WorkflowJob, EventBridgeEnvelopeParses) {
  auto payload = read_fixture("workflow_job_queued.json");
  expect_same(queued_fixture_event(),
              parse_job_event(eventbridge_envelope(payload)));
}

// -- the Lambda's scale-up message -------------------------------------------------

TEST(WorkflowJob, LambdaMessageWithLabelsAndRetryCounter) {
  auto body = R"({"id":29679449,"eventType":"workflow_job",)"
              R"("repositoryName":"octo-repo","repositoryOwner":"octo-org",)"
              R"("installationId":3456996,"repoOwnerType":"Organization",)"
              R"("labels":["self-hosted","linux"],"retryCounter":2})";
  job_event ev;
  ev.action = job_action::queued;
  ev.key = {29679449, 1};
  ev.repository = {"octo-org", "octo-repo", owner_type::organization};
  ev.installation_id = 3456996;
  ev.labels = {"self-hosted", "linux"};
  ev.retry_counter = 2;
  expect_same(ev, parse_job_event(body));
}

TEST(WorkflowJob, LambdaMessageWithoutLabelsOrRetryCounter) {
  auto body = R"({"id":17,"eventType":"workflow_job","repositoryName":"r",)"
              R"("repositoryOwner":"someone","installationId":0,)"
              R"("repoOwnerType":"User"})";
  job_event ev;
  ev.key = {17, 1};
  ev.repository = {"someone", "r", owner_type::user};
  expect_same(ev, parse_job_event(body));
}

// -- errors ------------------------------------------------------------------------

struct error_case {
  std::string body;
  std::string context;
};

/// A webhook body whose workflow_job is `job`, with a secret-looking field.
std::string webhook_with_job(const std::string& job) {
  return R"({"action":"queued","token":"ghs_SECRET","workflow_job":)" + job
         + R"(,"repository":{"name":"r","owner":{"login":"o","type":"User"}}})";
}

std::string lambda_with(const std::string& fields) {
  return R"({"token":"ghs_SECRET","eventType":"workflow_job",)" + fields + "}";
}

TEST(WorkflowJob, ErrorsSayWhatAndWhereButNeverTheBody) {
  const std::string repo = R"("repositoryName":"r","repositoryOwner":"o",)";
  const std::vector<error_case> cases = {
    {R"({"token":"ghs_SECRET"})",
     "neither a workflow_job webhook nor a scale-up message"},
    {R"(["ghs_SECRET"])", "expected object at $"},
    {R"({"action":"deleted","token":"ghs_SECRET","workflow_job":{}})",
     "unsupported action 'deleted' at $.action"},
    {R"({"action":"ghs_0123456789abcdefghijklmnopqrstuvwxyz","workflow_job":{}})",
     "unsupported action at $.action"},
    {R"({"token":"ghs_SECRET","workflow_job":{}})", "missing string at $.action"},
    {R"({"action":"queued","token":"ghs_SECRET","workflow_job":7})",
     "expected object at $.workflow_job"},
    {webhook_with_job(R"({"run_id":1,"labels":["x"]})"),
     "missing number at $.workflow_job.id"},
    {webhook_with_job(R"({"id":"ghs_SECRET","run_id":1,"labels":["x"]})"),
     "expected number at $.workflow_job.id"},
    {webhook_with_job(R"({"id":1.5,"run_id":1,"labels":["x"]})"),
     "expected integer at $.workflow_job.id"},
    {webhook_with_job(R"({"id":0,"run_id":1,"labels":["x"]})"),
     "number out of range at $.workflow_job.id"},
    {webhook_with_job(R"({"id":-3,"run_id":1,"labels":["x"]})"),
     "number out of range at $.workflow_job.id"},
    {webhook_with_job(
       R"({"id":18446744073709551615,"run_id":1,"labels":["x"]})"),
     "number out of range at $.workflow_job.id"},
    {webhook_with_job(R"({"id":1,"run_attempt":0,"run_id":1,"labels":["x"]})"),
     "number out of range at $.workflow_job.run_attempt"},
    {webhook_with_job(
       R"({"id":1,"run_attempt":2147483648,"run_id":1,"labels":["x"]})"),
     "number out of range at $.workflow_job.run_attempt"},
    {webhook_with_job(R"({"id":1,"labels":["x"]})"),
     "missing number at $.workflow_job.run_id"},
    {webhook_with_job(R"({"id":1,"run_id":1})"),
     "missing array of strings at $.workflow_job.labels"},
    {webhook_with_job(R"({"id":1,"run_id":1,"labels":["a","b",3]})"),
     "expected array of strings at $.workflow_job.labels[2]"},
    {webhook_with_job(R"({"id":1,"run_id":1,"labels":"ghs_SECRET"})"),
     "expected array of strings at $.workflow_job.labels"},
    {webhook_with_job(R"({"id":1,"run_id":1,"labels":["x"],"runner_name":5})"),
     "expected string or null at $.workflow_job.runner_name"},
    {R"({"action":"queued","token":"ghs_SECRET","workflow_job":{"id":1,)"
     R"("run_id":1,"labels":["x"]},"repository":{"name":"",)"
     R"("owner":{"login":"o","type":"User"}}})",
     "empty name at $.repository.name"},
    {R"({"action":"queued","token":"ghs_SECRET","workflow_job":{"id":1,)"
     R"("run_id":1,"labels":["x"]},"repository":{"name":"r",)"
     R"("owner":{"type":"User"}}})",
     "missing string at $.repository.owner.login"},
    {R"({"action":"queued","token":"ghs_SECRET","workflow_job":{"id":1,)"
     R"("run_id":1,"labels":["x"]},"repository":{"name":"r",)"
     R"("owner":{"login":"o","type":"Enterprise"}}})",
     "unsupported owner type 'Enterprise' at $.repository.owner.type"},
    {R"({"action":"queued","token":"ghs_SECRET","workflow_job":{"id":1,)"
     R"("run_id":1,"labels":["x"]}})",
     "missing string at $.repository.name"},
    {R"({"detail-type":"push","token":"ghs_SECRET","detail":{}})",
     "unsupported detail type 'push' at $.detail-type"},
    {R"({"token":"ghs_SECRET","detail":{}})", "missing string at $.detail-type"},
    {R"({"detail-type":"workflow_job","detail":"ghs_SECRET"})",
     "expected object at $.detail"},
    {R"({"detail-type":"workflow_job","detail":{"action":"queued",)"
     R"("token":"ghs_SECRET"}})",
     "missing object at $.detail.workflow_job"},
    {R"({"detail-type":"workflow_job","detail":{"action":"queued",)"
     R"("workflow_job":{"id":-1,"token":"ghs_SECRET"}}})",
     "number out of range at $.detail.workflow_job.id"},
    {R"({"eventType":"check_run","token":"ghs_SECRET"})",
     "unsupported event type 'check_run' at $.eventType"},
    {lambda_with(repo + R"("installationId":1,"repoOwnerType":"User")"),
     "missing number at $.id"},
    {lambda_with(R"("id":0,)" + repo
                 + R"("installationId":1,"repoOwnerType":"User")"),
     "number out of range at $.id"},
    {lambda_with(R"("id":1,"repositoryName":"","repositoryOwner":"o",)"
                 R"("installationId":1,"repoOwnerType":"User")"),
     "empty name at $.repositoryName"},
    {lambda_with(R"("id":1,"repositoryName":"r","installationId":1,)"
                 R"("repoOwnerType":"User")"),
     "missing string at $.repositoryOwner"},
    {lambda_with(R"("id":1,)" + repo + R"("repoOwnerType":"User")"),
     "missing number at $.installationId"},
    {lambda_with(R"("id":1,)" + repo
                 + R"("installationId":-1,"repoOwnerType":"User")"),
     "number out of range at $.installationId"},
    {lambda_with(R"("id":1,)" + repo + R"("installationId":1)"),
     "missing string at $.repoOwnerType"},
    {lambda_with(R"("id":1,)" + repo
                 + R"("installationId":1,"repoOwnerType":"Bot")"),
     "unsupported owner type 'Bot' at $.repoOwnerType"},
    {lambda_with(R"("id":1,)" + repo
                 + R"("installationId":1,"repoOwnerType":"User",)"
                   R"("labels":["x",null])"),
     "expected array of strings at $.labels[1]"},
    {lambda_with(R"("id":1,)" + repo
                 + R"("installationId":1,"repoOwnerType":"User",)"
                   R"("retryCounter":"3")"),
     "expected number at $.retryCounter"},
    {lambda_with(R"("id":1,)" + repo
                 + R"("installationId":1,"repoOwnerType":"User",)"
                   R"("retryCounter":-1)"),
     "number out of range at $.retryCounter"},
  };
  for (const auto& c : cases) {
    auto result = parse_job_event(c.body);
    ASSERT_FALSE(result) << c.body;
    EXPECT_TRUE(result.error() == errc::malformed_event) << c.body;
    auto context = context_of(result.error());
    EXPECT_EQ(context, c.context) << c.body;
    EXPECT_EQ(context.find("SECRET"), std::string::npos) << context;
  }
}

TEST(WorkflowJob, NotJsonSaysWhereParsingStopped) {
  auto result = parse_job_event(R"({"token":"ghs_SECRET",)");
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error() == errc::malformed_event);
  EXPECT_EQ(context_of(result.error()),
            "not JSON: Missing a name for object member at offset 22");
}

TEST(WorkflowJob, RejectsTrailingDataAndInvalidUtf8) {
  for (std::string body :
       {std::string{R"({"eventType":"workflow_job"} {"token":"ghs_SECRET"})"},
        std::string{"{\"token\":\"ghs_SECRET\xff\"}"}}) {
    auto result = parse_job_event(body);
    ASSERT_FALSE(result);
    EXPECT_TRUE(result.error() == errc::malformed_event);
    auto context = context_of(result.error());
    EXPECT_EQ(context.rfind("not JSON: ", 0), 0u) << context;
    EXPECT_EQ(context.find("SECRET"), std::string::npos) << context;
  }
}

TEST(WorkflowJob, RejectsBodiesOverOneMebibyte) {
  auto body = webhook_with_job(R"({"id":1,"run_id":1,"labels":["x"]})");
  body.insert(1, std::string(1024 * 1024, ' '));
  auto result = parse_job_event(body);
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error() == errc::malformed_event);
  auto context = context_of(result.error());
  EXPECT_EQ(context.rfind("body too large", 0), 0u) << context;
}

TEST(WorkflowJob, DeepNestingIsAnErrorNotAStackOverflow) {
  auto result = parse_job_event(std::string(1000 * 1000, '['));
  ASSERT_FALSE(result);
  EXPECT_TRUE(result.error() == errc::malformed_event);
}

TEST(WorkflowJob, EveryTruncationOfTheFixtureIsMalformed) {
  auto body = read_fixture("workflow_job_queued.json");
  auto end = body.find_last_not_of(" \n") + 1;
  for (size_t n = 0; n < end; ++n) {
    auto result = parse_job_event(body.substr(0, n));
    ASSERT_FALSE(result) << "prefix of " << n << " bytes";
    ASSERT_TRUE(result.error() == errc::malformed_event)
      << "prefix of " << n << " bytes";
  }
  EXPECT_TRUE(parse_job_event(body.substr(0, end)));
}

TEST(WorkflowJob, CorruptedBytesGiveAValueOrMalformedEvent) {
  auto body = read_fixture("workflow_job_queued.json");
  std::mt19937_64 rng{7};
  std::uniform_int_distribution<size_t> position{0, body.size() - 1};
  std::uniform_int_distribution<int> byte{0, 255};
  for (int i = 0; i < 3000; ++i) {
    auto corrupted = body;
    for (int flips = 0; flips < 1 + i % 3; ++flips)
      corrupted[position(rng)] = static_cast<char>(byte(rng));
    auto result = parse_job_event(corrupted);
    ASSERT_TRUE(result || result.error() == errc::malformed_event);
  }
}

// -- writing and round trips ---------------------------------------------------------

TEST(WorkflowJob, WebhookPayloadRoundTripsExactly) {
  auto org = sample_event();
  auto user = sample_event();
  user.repository = {"someone", "dotfiles", owner_type::user};
  user.installation_id = 0;
  user.labels = {"self-hosted", "label with \"quotes\" and \\ and é"};
  for (auto base : {org, user}) {
    for (auto action : {job_action::queued, job_action::in_progress,
                        job_action::completed, job_action::waiting}) {
      auto ev = base;
      ev.action = action;
      if (action != job_action::queued)
        ev.runner_name = "ghscale-i-0123456789abcdef0";
      expect_same(ev, parse_job_event(to_webhook_payload(ev)));
    }
  }
}

TEST(WorkflowJob, WebhookPayloadFollowsGitHubSchema) {
  auto ev = sample_event();
  rapidjson::Document doc;
  doc.Parse(to_webhook_payload(ev).c_str());
  ASSERT_FALSE(doc.HasParseError());
  EXPECT_STREQ(doc["action"].GetString(), "queued");
  const auto& job = doc["workflow_job"];
  EXPECT_EQ(job["id"].GetInt64(), 4242);
  EXPECT_EQ(job["run_id"].GetInt64(), 77);
  EXPECT_EQ(job["run_attempt"].GetInt64(), 1);
  EXPECT_STREQ(job["status"].GetString(), "queued");
  EXPECT_TRUE(job["runner_name"].IsNull());
  ASSERT_EQ(job["labels"].Size(), 3u);
  EXPECT_STREQ(job["labels"][2].GetString(), "ARM64");
  EXPECT_STREQ(doc["repository"]["full_name"].GetString(), "acme/widgets");
  EXPECT_STREQ(doc["repository"]["owner"]["type"].GetString(), "Organization");
  EXPECT_STREQ(doc["organization"]["login"].GetString(), "acme");
  EXPECT_EQ(doc["installation"]["id"].GetInt64(), 12);
  ev.repository.type = owner_type::user;
  ev.action = job_action::in_progress;
  ev.runner_name = "r-1";
  doc.Parse(to_webhook_payload(ev).c_str());
  EXPECT_FALSE(doc.HasMember("organization"));
  EXPECT_STREQ(doc["workflow_job"]["status"].GetString(), "in_progress");
  EXPECT_STREQ(doc["workflow_job"]["runner_name"].GetString(), "r-1");
}

TEST(WorkflowJob, LambdaMessageRoundTripsWhatTheFormatCarries) {
  auto ev = sample_event();
  ev.retry_counter = 3;
  auto expected = ev;
  expected.run_id = 0;
  expected.key.run_attempt = 1;
  ev.key.run_attempt = 4; // not carried by the format
  expect_same(expected, parse_job_event(to_lambda_message(ev)));
  ev.repository.type = owner_type::user;
  ev.labels.clear();
  ev.installation_id = 0;
  expected.repository.type = owner_type::user;
  expected.labels.clear();
  expected.installation_id = 0;
  expect_same(expected, parse_job_event(to_lambda_message(ev)));
}

TEST(WorkflowJob, LambdaMessageHasTheLambdaFields) {
  auto ev = sample_event();
  ev.retry_counter = 1;
  EXPECT_EQ(to_lambda_message(ev),
            R"({"id":4242,"eventType":"workflow_job","repositoryName":"widgets",)"
            R"("repositoryOwner":"acme","installationId":12,)"
            R"("repoOwnerType":"Organization",)"
            R"("labels":["self-hosted","Linux","ARM64"],"retryCounter":1})");
}

TEST(WorkflowJob, LambdaMessageOnlyForQueuedJobs) {
  auto ev = sample_event();
  ev.action = job_action::completed;
  EXPECT_THROW(to_lambda_message(ev), std::logic_error);
}
