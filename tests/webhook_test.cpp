// The webhook decision: signatures (GitHub's documented vector, rotation),
// limits, event and action filtering, the allow-list, and the queue message.
#include "transport/webhook.hpp"
#include "transport/url.hpp"

#include "transport/digest.hpp"
#include "transport/workflow_job.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <unistd.h>

namespace ghscale {
namespace {

const secret_string docs_secret{"It's a Secret to Everybody"};
const std::string docs_payload = "Hello, World!";
const std::string docs_signature
  = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";

std::string sign(const std::string& secret, const std::string& body) {
  return "sha256=" + hex(hmac_sha256(secret, body));
}

job_event sample_job(job_action action = job_action::queued) {
  job_event ev;
  ev.action = action;
  ev.key = job_key{4242, 1};
  ev.run_id = 77;
  ev.repository = repository_ref{"Octo-Org", "Hello-World",
                                 owner_type::organization};
  ev.installation_id = 99;
  ev.labels = {"self-hosted", "linux"};
  if (action != job_action::queued) {
    ev.runner_name = "ghscale-i-0abc";
    ev.created_at = std::chrono::seconds(1'700'000'000);
    ev.started_at = std::chrono::seconds(1'700'000'042);
  }
  return ev;
}

webhook_request delivery(const std::string& body, const std::string& secret,
                         const std::string& event = "workflow_job") {
  webhook_request req;
  req.method = "POST";
  req.headers = {{"Content-Type", "application/json"},
                 {"X-GitHub-Event", event},
                 {"X-GitHub-Delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"},
                 {"X-Hub-Signature-256", sign(secret, body)}};
  req.body = body;
  return req;
}

class WebhookTest : public ::testing::Test {
protected:
  webhook_settings settings{{secret_string{"current-secret"}}, {}, 1024 * 1024};

  webhook_decision decide(const webhook_request& req) {
    return decide_webhook(settings, req);
  }
};

TEST_F(WebhookTest, GitHubDocumentationVectorVerifies) {
  EXPECT_EQ(sign(docs_secret.value, docs_payload), docs_signature);
  EXPECT_TRUE(signature_matches({docs_secret}, docs_signature, docs_payload));
  EXPECT_FALSE(signature_matches({docs_secret}, docs_signature, "Hello, World?"));
  EXPECT_FALSE(signature_matches({secret_string{"It's a secret to everybody"}},
                                 docs_signature, docs_payload));
}

TEST_F(WebhookTest, DocumentationVectorPassesTheSignatureCheckOfADelivery) {
  settings.secrets = {docs_secret};
  webhook_request req{"POST",
                      {{"x-hub-signature-256", docs_signature},
                       {"x-github-event", "ping"}},
                      docs_payload};
  auto d = decide(req);
  EXPECT_EQ(d.status, 200);
  EXPECT_EQ(d.outcome, "ping");
  EXPECT_EQ(d.response, "pong");
}

TEST_F(WebhookTest, SignedQueuedJobBecomesTheLambdaMessage) {
  auto ev = sample_job();
  auto d = decide(delivery(to_webhook_payload(ev), "current-secret"));
  EXPECT_EQ(d.status, 202);
  EXPECT_EQ(d.outcome, "accepted");
  ASSERT_TRUE(d.message);
  EXPECT_EQ(*d.message, to_lambda_message(ev));
  auto back = parse_job_event(*d.message);
  ASSERT_TRUE(back);
  EXPECT_EQ(back->key.job_id, 4242);
  EXPECT_EQ(back->repository, ev.repository);
  EXPECT_EQ(back->labels, ev.labels);
  EXPECT_EQ(back->installation_id, 99);
}

// GitHub's `content_type=form` sends payload=<url-encoded JSON>, signed as
// sent: the job is read from the field, the signature checked on the body.
TEST_F(WebhookTest, FormEncodedDeliveryIsReadFromItsPayloadField) {
  auto ev = sample_job();
  auto body = form_encode({{"payload", to_webhook_payload(ev)}});
  auto req = delivery(body, "current-secret");
  req.headers[0].value = "application/x-www-form-urlencoded";
  auto d = decide(req);
  EXPECT_EQ(d.status, 202) << d.response;
  ASSERT_TRUE(d.message);
  EXPECT_EQ(*d.message, to_lambda_message(ev));
  // Signed over the JSON instead of the body as sent: refused.
  req.headers[3].value = sign("current-secret", to_webhook_payload(ev));
  EXPECT_EQ(decide(req).outcome, "bad_signature");
  // Signed, but no payload field.
  auto empty = delivery("other=1", "current-secret");
  empty.headers[0].value = "application/x-www-form-urlencoded; charset=utf-8";
  auto refused = decide(empty);
  EXPECT_EQ(refused.status, 400);
  EXPECT_EQ(refused.outcome, "malformed");
  EXPECT_NE(refused.response.find("payload"), std::string::npos) << refused.response;
}

// A second X-Hub-Signature-256, whichever of the two is right, is not a
// delivery GitHub signed once: a proxy might judge by the other one.
TEST_F(WebhookTest, ADuplicateSignatureHeaderIsRefused) {
  auto body = to_webhook_payload(sample_job());
  for (bool right_first : {true, false}) {
    auto req = delivery(body, "current-secret");
    http_header wrong{"x-hub-signature-256", sign("someone-else", body)};
    if (right_first)
      req.headers.push_back(wrong);
    else
      req.headers.insert(req.headers.begin(), wrong);
    auto d = decide(req);
    EXPECT_EQ(d.status, 401);
    EXPECT_EQ(d.outcome, "bad_signature");
    EXPECT_FALSE(d.message);
  }
}

TEST_F(WebhookTest, InProgressAndCompletedAreForwardedWithTheirRunner) {
  for (auto action : {job_action::in_progress, job_action::completed,
                      job_action::waiting}) {
    auto ev = sample_job(action);
    auto d = decide(delivery(to_webhook_payload(ev), "current-secret"));
    EXPECT_EQ(d.status, 202) << to_string(action);
    ASSERT_TRUE(d.message) << to_string(action);
    auto back = parse_job_event(*d.message);
    ASSERT_TRUE(back);
    EXPECT_EQ(back->action, action);
    EXPECT_EQ(back->runner_name, ev.runner_name);
    EXPECT_EQ(back->run_id, 77);
    // The ledger's time-to-start comes from these.
    EXPECT_EQ(back->created_at, ev.created_at);
    EXPECT_EQ(back->started_at, ev.started_at);
  }
}

TEST_F(WebhookTest, BadSignatureIsRejected) {
  auto req = delivery(to_webhook_payload(sample_job()), "another-secret");
  auto d = decide(req);
  EXPECT_EQ(d.status, 401);
  EXPECT_EQ(d.outcome, "bad_signature");
  EXPECT_FALSE(d.message);
  // A valid signature of a different body is as bad.
  req.headers.back().value = sign("current-secret", "{}");
  EXPECT_EQ(decide(req).outcome, "bad_signature");
  // So is a bare hex digest without the scheme.
  req.headers.back().value = hex(hmac_sha256("current-secret", req.body));
  EXPECT_EQ(decide(req).outcome, "bad_signature");
}

TEST_F(WebhookTest, MissingSignatureIsRejectedAsUnsigned) {
  auto req = delivery(to_webhook_payload(sample_job()), "current-secret");
  req.headers.pop_back();
  auto d = decide(req);
  EXPECT_EQ(d.status, 401);
  EXPECT_EQ(d.outcome, "unsigned");
  EXPECT_FALSE(d.message);
}

TEST_F(WebhookTest, EitherSecretAcceptsDuringRotation) {
  settings.secrets = {secret_string{"old-secret"}, secret_string{"new-secret"}};
  auto body = to_webhook_payload(sample_job());
  EXPECT_EQ(decide(delivery(body, "old-secret")).outcome, "accepted");
  EXPECT_EQ(decide(delivery(body, "new-secret")).outcome, "accepted");
  EXPECT_EQ(decide(delivery(body, "current-secret")).outcome, "bad_signature");
}

TEST_F(WebhookTest, UpperCaseHexSignatureIsAccepted) {
  auto body = to_webhook_payload(sample_job());
  auto req = delivery(body, "current-secret");
  req.headers.back().value = "sha256=" + [&] {
    auto digest = hex(hmac_sha256("current-secret", body));
    for (auto& c : digest)
      c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return digest;
  }();
  EXPECT_EQ(decide(req).outcome, "accepted");
}

TEST_F(WebhookTest, BodyOverTheLimitIsRejectedBeforeVerification) {
  settings.max_body_bytes = 64;
  auto req = delivery(std::string(65, 'x'), "current-secret");
  auto d = decide(req);
  EXPECT_EQ(d.status, 413);
  EXPECT_EQ(d.outcome, "too_large");
  req.body.resize(64); // at the limit: on to the signature (now stale)
  EXPECT_EQ(decide(req).outcome, "bad_signature");
}

TEST_F(WebhookTest, PingIsAnsweredAndOtherEventsIgnored) {
  auto ping = decide(delivery(R"({"zen":"Design for failure."})",
                              "current-secret", "ping"));
  EXPECT_EQ(ping.status, 200);
  EXPECT_EQ(ping.response, "pong");
  EXPECT_FALSE(ping.message);
  auto push = decide(delivery(R"({"ref":"refs/heads/main"})", "current-secret",
                              "push"));
  EXPECT_EQ(push.status, 202);
  EXPECT_EQ(push.outcome, "ignored_event");
  EXPECT_FALSE(push.message);
  auto req = delivery("{}", "current-secret");
  req.headers.erase(req.headers.begin() + 1); // X-GitHub-Event
  auto none = decide(req);
  EXPECT_EQ(none.status, 400);
  EXPECT_EQ(none.outcome, "wrong_event");
}

TEST_F(WebhookTest, MalformedBodiesAreRejected) {
  for (std::string body : std::vector<std::string>{"not json", "[1,2]", R"({"action":"queued"})",
                           R"({"action":"queued","workflow_job":{"id":"x"}})",
                           // The Lambda's format is not what GitHub sends.
                           to_lambda_message(sample_job())}) {
    auto d = decide(delivery(body, "current-secret"));
    EXPECT_EQ(d.status, 400) << body;
    EXPECT_EQ(d.outcome, "malformed") << body;
    EXPECT_FALSE(d.message);
    EXPECT_EQ(d.response.find(body), std::string::npos);
  }
}

TEST_F(WebhookTest, UnknownActionIsAcknowledgedButNotForwarded) {
  auto body = to_webhook_payload(sample_job());
  auto at = body.find("\"queued\"");
  body.replace(at, 8, "\"requeued\"");
  auto d = decide(delivery(body, "current-secret"));
  EXPECT_EQ(d.status, 202);
  EXPECT_EQ(d.outcome, "unsupported_action");
  EXPECT_FALSE(d.message);
}

TEST_F(WebhookTest, AllowListMatchesRepositoryOrOwnerIgnoringCase) {
  repository_ref repo{"Octo-Org", "Hello-World", owner_type::organization};
  EXPECT_TRUE(repository_allowed({}, repo));
  EXPECT_TRUE(repository_allowed({"octo-org/hello-world"}, repo));
  EXPECT_TRUE(repository_allowed({"other/x", "OCTO-ORG/*"}, repo));
  EXPECT_FALSE(repository_allowed({"octo-org/hello"}, repo));
  EXPECT_FALSE(repository_allowed({"octo/*"}, repo));
  EXPECT_FALSE(repository_allowed({"*"}, repo));

  settings.allowed_repositories = {"someone/else"};
  auto d = decide(delivery(to_webhook_payload(sample_job()), "current-secret"));
  EXPECT_EQ(d.status, 403);
  EXPECT_EQ(d.outcome, "repository_not_allowed");
  EXPECT_FALSE(d.message);
  settings.allowed_repositories = {"octo-org/*"};
  EXPECT_EQ(decide(delivery(to_webhook_payload(sample_job()), "current-secret"))
              .outcome,
            "accepted");
}

TEST_F(WebhookTest, OnlyPostIsAccepted) {
  auto req = delivery(to_webhook_payload(sample_job()), "current-secret");
  req.method = "GET";
  EXPECT_EQ(decide(req).status, 405);
}

TEST_F(WebhookTest, ReasonsNeverQuoteTheSecret) {
  auto req = delivery("not json", "current-secret");
  req.headers.back().value = "sha256=current-secret";
  auto d = decide(req);
  EXPECT_EQ(d.response.find("current-secret"), std::string::npos);
  EXPECT_EQ(d.outcome.find("current-secret"), std::string::npos);
}

class SecretFilesTest : public ::testing::Test {
protected:
  std::string dir = [] {
    char tmpl[] = "/tmp/webhook_secrets_XXXXXX";
    return std::string{::mkdtemp(tmpl)};
  }();

  std::string write(const std::string& name, const std::string& content) {
    auto path = dir + "/" + name;
    std::ofstream{path, std::ios::binary} << content;
    files_.push_back(path);
    return path;
  }

  ~SecretFilesTest() override {
    for (auto& f : files_)
      std::remove(f.c_str());
    ::rmdir(dir.c_str());
  }

private:
  std::vector<std::string> files_;
};

TEST_F(SecretFilesTest, LoadsEachFileWithoutItsTrailingNewline) {
  auto a = write("a", "first secret\n");
  auto b = write("b", "second\r\n");
  auto c = write("c", "third");
  auto secrets = load_webhook_secrets({a, b, c});
  ASSERT_TRUE(secrets) << describe(secrets.error());
  ASSERT_EQ(secrets->size(), 3u);
  EXPECT_EQ((*secrets)[0].value, "first secret");
  EXPECT_EQ((*secrets)[1].value, "second");
  EXPECT_EQ((*secrets)[2].value, "third");
}

TEST_F(SecretFilesTest, ErrorsNameTheFileAndWhyButNotTheContent) {
  auto missing = dir + "/missing";
  auto err = load_webhook_secrets({missing}).error();
  EXPECT_EQ(describe(err), "invalid_config: webhook secret file " + missing
                             + ": cannot read: No such file or directory");
  auto empty = write("empty", "\n");
  EXPECT_EQ(describe(load_webhook_secrets({empty}).error()),
            "invalid_config: webhook secret file " + empty + ": is empty");
  EXPECT_FALSE(load_webhook_secrets({}));
}

} // namespace
} // namespace ghscale
