// The SQS, EC2 and SSM client actors and their aws_caller on the
// deterministic scheduler, behind a scripted HTTP engine and a fixed
// credentials actor: signing, retries of throttling, 5xx and transport
// failures (a retried CreateFleet keeps its ClientToken), the client-side
// token bucket, pagination, batch splitting, and errors that say what and
// where without a secret.
#include "actors/clients/aws_call.hpp"
#include "actors/clients/ec2_client.hpp"
#include "actors/clients/sqs_queue.hpp"
#include "actors/clients/ssm_client.hpp"
#include "tests/actor_test.hpp"
#include "transport/url.hpp"

#include "tests/aws_canned.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

const std::string access_key = "AKIDEXAMPLE";
const std::string secret_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

using ghscale::testing::canned;

http_response answer(int32_t status, std::string body) {
  return {status, {}, secret_string{std::move(body)}};
}

/// What the scripted engine saw and how it answers.
struct http_script {
  struct exchange {
    http_request request;
    caf::timespan at; // actor clock
  };
  std::vector<exchange> seen;
  /// Answers the n-th request (from 0).
  std::function<caf::expected<http_response>(const http_request&, size_t)> answer;
};
using script_ptr = std::shared_ptr<http_script>;

http_actor::behavior_type scripted_http(http_actor::pointer self, script_ptr script) {
  return {
    [=](atom::http, http_request& req) -> caf::result<http_response> {
      script->seen.push_back({req, self->clock().now().time_since_epoch()});
      auto res = script->answer(req, script->seen.size() - 1);
      if (res)
        return std::move(*res);
      return std::move(res.error());
    },
  };
}

aws_credentials_actor::behavior_type
fixed_credentials(aws_credentials_actor::pointer, bool available) {
  return {
    [=](atom::credentials) -> caf::result<aws_credentials> {
      if (!available)
        return caf::make_error(errc::unavailable, "no credential source found");
      aws_credentials creds;
      creds.access_key_id = access_key;
      creds.secret_access_key.value = secret_key;
      creds.source = "test";
      return creds;
    },
    [](atom::refresh) {},
  };
}

std::string header(const http_request& req, const std::string& name) {
  auto value = find_header(req.headers, name);
  return value != nullptr ? *value : std::string{};
}

std::string form_value(const http_request& req, const std::string& key) {
  std::istringstream in{req.body.value};
  std::string pair;
  while (std::getline(in, pair, '&')) {
    auto eq = pair.find('=');
    if (uri_decode(pair.substr(0, eq)) == key)
      return uri_decode(pair.substr(eq + 1));
  }
  return {};
}

const std::string queue_url = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs";

class AwsClientTest : public test::actor_test {
protected:
  AwsClientTest() {
    opts.call_timeout = 10s;
    opts.max_attempts = 4;
    opts.backoff_base = 200ms;
    opts.backoff_max = 10s;
    opts.jitter = 0.2;
  }

  aws_endpoint endpoint(const std::string& service) {
    return {"https://" + service + ".us-east-1.amazonaws.com/", {"us-east-1", service}};
  }

  aws_credentials_actor credentials(bool available = true) {
    return sys.spawn(fixed_credentials, available);
  }

  ec2_actor spawn_ec2(bool creds_available = true) {
    return stop_at_teardown(
      sys.spawn(ec2_client, endpoint("ec2"), credentials(creds_available),
                http_actor{sys.spawn(scripted_http, script)}, opts, stats, 7u));
  }

  queue_actor spawn_sqs() {
    queue_config q;
    q.name = "jobs";
    q.url = queue_url;
    return stop_at_teardown(sys.spawn(sqs_queue, q, endpoint("sqs"), credentials(),
                                      http_actor{sys.spawn(scripted_http, script)},
                                      opts, stats, 7u));
  }

  ssm_client_actor spawn_ssm() {
    return stop_at_teardown(sys.spawn(ssm_client, endpoint("ssm"), credentials(),
                                      http_actor{sys.spawn(scripted_http, script)},
                                      opts, std::string{"alias/ghscale"}, 40.0, stats, 7u));
  }

  caf::timespan budget() {
    return aws_call_budget(opts, 60s);
  }

  aws_call_options opts;
  metrics_ptr stats = std::make_shared<metrics>();
  script_ptr script = std::make_shared<http_script>();
};

fleet_request fleet(const std::string& token, int32_t count = 2) {
  fleet_request req;
  req.client_token = token;
  req.launch_template = "ghscale-runner";
  req.instance_types = {"m5.large"};
  req.subnets = {"subnet-aaaa1111"};
  req.capacity = capacity_type::spot;
  req.count = count;
  return req;
}

} // namespace

TEST_F(AwsClientTest, ThrottledCreateFleetIsRetriedWithTheSameClientToken) {
  script->answer = [](const http_request&, size_t n) -> caf::expected<http_response> {
    if (n < 2)
      return answer(503, canned("ec2_throttled.xml"));
    return answer(200, canned("create_fleet_partial.xml"));
  };
  auto ec2 = spawn_ec2();
  auto reply = spawn_requester<fleet_result>(ec2, budget(), atom::fleet_v,
                                             fleet("launch-42"));
  advance(30s);
  ASSERT_TRUE(reply->has_value());
  ASSERT_TRUE(**reply) << describe((*reply)->error());
  EXPECT_EQ((**reply)->instances.size(), 2u);
  EXPECT_EQ((**reply)->errors.size(), 1u);
  ASSERT_EQ(script->seen.size(), 3u);
  for (auto& x : script->seen) {
    EXPECT_EQ(form_value(x.request, "ClientToken"), "launch-42");
    EXPECT_EQ(x.request.body.value, script->seen[0].request.body.value);
    EXPECT_EQ(header(x.request, "authorization")
                .rfind("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/", 0),
              0u);
    EXPECT_NE(header(x.request, "authorization").find("/us-east-1/ec2/aws4_request"),
              std::string::npos);
  }
  // Jittered exponential backoff: 200 ms then 400 ms, each +-20%.
  auto first_gap = script->seen[1].at - script->seen[0].at;
  auto second_gap = script->seen[2].at - script->seen[1].at;
  EXPECT_GE(first_gap, 160ms);
  EXPECT_LE(first_gap, 240ms);
  EXPECT_GE(second_gap, 320ms);
  EXPECT_LE(second_gap, 480ms);
  EXPECT_EQ(stats->count("ghscale_aws_throttled_total",
                         {{"service", "ec2"}, {"api", "CreateFleet"}}),
            2);
  EXPECT_EQ(stats->count("ghscale_aws_retries_total",
                         {{"service", "ec2"}, {"api", "CreateFleet"}}),
            2);
  EXPECT_EQ(stats->count("ghscale_aws_calls_total",
                         {{"service", "ec2"}, {"api", "CreateFleet"}, {"status", "200"}}),
            1);
}

TEST_F(AwsClientTest, CreateFleetStillThrottledAfterRetriesIsThrottled) {
  script->answer = [](const http_request&, size_t) -> caf::expected<http_response> {
    return answer(503, canned("ec2_throttled.xml"));
  };
  auto ec2 = spawn_ec2();
  auto reply = spawn_requester<fleet_result>(ec2, budget(), atom::fleet_v, fleet("t"));
  advance(60s);
  ASSERT_TRUE(reply->has_value());
  ASSERT_FALSE(**reply);
  auto err = (*reply)->error();
  EXPECT_EQ(err, errc::throttled);
  EXPECT_EQ(describe(err),
            "throttled: EC2 CreateFleet on https://ec2.us-east-1.amazonaws.com/: "
            "RequestLimitExceeded: Request limit exceeded.");
  EXPECT_EQ(script->seen.size(), 4u); // max_attempts
}

TEST_F(AwsClientTest, TheTokenBucketSpacesCreateFleetCalls) {
  script->answer = [](const http_request&, size_t) -> caf::expected<http_response> {
    return answer(200, canned("create_fleet_partial.xml"));
  };
  auto ec2 = spawn_ec2();
  std::vector<test::reply_slot<fleet_result>> replies;
  for (int i = 0; i < 53; ++i)
    replies.push_back(spawn_requester<fleet_result>(ec2, budget(), atom::fleet_v,
                                                    fleet("t" + std::to_string(i))));
  sched.run();
  EXPECT_EQ(script->seen.size(), 50u); // the burst
  advance(199ms);
  EXPECT_EQ(script->seen.size(), 50u);
  advance(1ms);
  EXPECT_EQ(script->seen.size(), 51u); // then 5 a second
  advance(400ms);
  EXPECT_EQ(script->seen.size(), 53u);
  auto start = script->seen[0].at;
  EXPECT_EQ(script->seen[50].at - start, 200ms);
  EXPECT_EQ(script->seen[51].at - start, 400ms);
  EXPECT_EQ(script->seen[52].at - start, 600ms);
  for (auto& reply : replies)
    EXPECT_TRUE(reply->has_value() && **reply);
}

TEST_F(AwsClientTest, DescribeInstancesFollowsEveryPage) {
  script->answer = [](const http_request& req,
                      size_t) -> caf::expected<http_response> {
    if (form_value(req, "NextToken") == "page-2-token")
      return answer(200, canned("describe_instances_page2.xml"));
    return answer(200, canned("describe_instances_page1.xml"));
  };
  auto ec2 = spawn_ec2();
  instance_filter filter;
  filter.tags = {{"ghscale:pool", "linux"}};
  auto reply = spawn_requester<instance_list>(ec2, budget(), atom::describe_v, filter);
  advance(1s);
  ASSERT_TRUE(reply->has_value() && **reply);
  auto& found = (**reply)->instances;
  ASSERT_EQ(found.size(), 3u);
  EXPECT_EQ(found[0].instance_id, "i-0aaaaaaaaaaaaaaa1");
  EXPECT_EQ(found[2].instance_id, "i-0bbbbbbbbbbbbbbb2");
  ASSERT_EQ(script->seen.size(), 2u);
  EXPECT_EQ(form_value(script->seen[0].request, "NextToken"), "");
  EXPECT_EQ(form_value(script->seen[1].request, "Filter.1.Name"), "tag:ghscale:pool");
}

TEST_F(AwsClientTest, TerminateRetriesTheKnownInstancesWhenSomeAreUnknown) {
  script->answer = [](const http_request& req,
                      size_t) -> caf::expected<http_response> {
    if (!form_value(req, "InstanceId.2").empty())
      return answer(400, canned("ec2_instance_not_found.xml"));
    return answer(200, canned("terminate_instances.xml"));
  };
  auto ec2 = spawn_ec2();
  instance_ids ids{{"i-0ccccccccccccccc1", "i-0aaaaaaaaaaaaaaa1", "i-0ccccccccccccccc2"}};
  auto reply = spawn_requester<batch_result>(ec2, budget(), atom::terminate_v, ids);
  advance(1s);
  ASSERT_TRUE(reply->has_value() && **reply);
  auto& result = ***reply;
  EXPECT_EQ(result.succeeded, (std::vector<std::string>{"i-0aaaaaaaaaaaaaaa1"}));
  ASSERT_EQ(result.failed.size(), 2u);
  EXPECT_EQ(result.failed[0].id, "i-0ccccccccccccccc1");
  EXPECT_EQ(result.failed[0].code, "InvalidInstanceID.NotFound");
  EXPECT_EQ(result.failed[1].id, "i-0ccccccccccccccc2");
  ASSERT_EQ(script->seen.size(), 2u);
  EXPECT_EQ(form_value(script->seen[1].request, "InstanceId.1"), "i-0aaaaaaaaaaaaaaa1");
}

TEST_F(AwsClientTest, ServerErrorsAndTransportFailuresAreRetried) {
  script->answer = [](const http_request&, size_t n) -> caf::expected<http_response> {
    if (n == 0)
      return caf::make_error(errc::timeout, "POST https://sqs...: timed out");
    if (n == 1)
      return answer(500, R"({"__type":"InternalFailure"})");
    return answer(200, canned("sqs_attributes.json"));
  };
  auto sqs = spawn_sqs();
  auto reply = spawn_requester<queue_depth>(sqs, budget(), atom::depth_v);
  advance(5s);
  ASSERT_TRUE(reply->has_value() && **reply);
  EXPECT_EQ((**reply)->visible, 12);
  EXPECT_EQ(script->seen.size(), 3u);
  EXPECT_EQ(stats->count("ghscale_aws_calls_total", {{"service", "sqs"},
                                                     {"api", "GetQueueAttributes"},
                                                     {"status", "error"}}),
            1);
}

TEST_F(AwsClientTest, RejectedCallsAreNotRetriedAndKeepSecretsOut) {
  script->answer = [](const http_request&, size_t) -> caf::expected<http_response> {
    return answer(403, R"({"__type":"com.amazon.coral.service#AccessDeniedException",)"
                       R"("Message":"User is not authorized to perform ssm:PutParameter"})");
  };
  auto ssm = spawn_ssm();
  parameter param{"/ghscale/runners/i-1", secret_string{"jit-config-secret"}, {}};
  auto reply = spawn_requester<std::string>(ssm, budget(), atom::put_param_v, param);
  advance(5s);
  ASSERT_TRUE(reply->has_value());
  ASSERT_FALSE(**reply);
  auto text = describe((*reply)->error());
  EXPECT_EQ((*reply)->error(), errc::rejected);
  EXPECT_EQ(text, "rejected: SSM PutParameter of /ghscale/runners/i-1 on "
                  "https://ssm.us-east-1.amazonaws.com/: AccessDeniedException: "
                  "User is not authorized to perform ssm:PutParameter");
  EXPECT_EQ(text.find(secret_key), std::string::npos);
  EXPECT_EQ(text.find("jit-config-secret"), std::string::npos);
  ASSERT_EQ(script->seen.size(), 1u);
  EXPECT_EQ(header(script->seen[0].request, "x-amz-target"), "AmazonSSM.PutParameter");
}

TEST_F(AwsClientTest, DeletingAMissingParameterCountsAsDone) {
  script->answer = [](const http_request&, size_t) -> caf::expected<http_response> {
    return answer(400, canned("ssm_parameter_not_found.json"));
  };
  auto ssm = spawn_ssm();
  auto reply = spawn_requester<std::string>(ssm, budget(), atom::del_param_v,
                                            std::string{"/ghscale/runners/i-1"});
  advance(1s);
  ASSERT_TRUE(reply->has_value() && **reply);
  EXPECT_EQ(***reply, "/ghscale/runners/i-1");
}

TEST_F(AwsClientTest, MissingCredentialsFailTheCallWithoutSending) {
  script->answer = [](const http_request&, size_t) -> caf::expected<http_response> {
    return answer(200, "");
  };
  auto ec2 = spawn_ec2(false);
  auto reply = spawn_requester<batch_result>(ec2, budget(), atom::terminate_v,
                                             instance_ids{{"i-1"}});
  advance(1s);
  ASSERT_TRUE(reply->has_value());
  ASSERT_FALSE(**reply);
  EXPECT_EQ((*reply)->error(), errc::unavailable);
  EXPECT_NE(describe((*reply)->error()).find("EC2 TerminateInstances on"), std::string::npos);
  EXPECT_TRUE(script->seen.empty());
}

TEST_F(AwsClientTest, ReceiveIsALongPollAndParsesMessages) {
  script->answer = [](const http_request&, size_t) -> caf::expected<http_response> {
    return answer(200, canned("sqs_receive.json"));
  };
  auto sqs = spawn_sqs();
  receive_request req;
  req.wait = 20s;
  auto reply = spawn_requester<received_batch>(sqs, budget(), atom::receive_v, req);
  advance(1s);
  ASSERT_TRUE(reply->has_value() && **reply);
  ASSERT_EQ((**reply)->messages.size(), 2u);
  EXPECT_EQ((**reply)->messages[0].receive_count, 3);
  ASSERT_EQ(script->seen.size(), 1u);
  EXPECT_EQ(script->seen[0].request.timeout, 30s); // the wait plus the call timeout
}

TEST_F(AwsClientTest, BatchesSplitIntoTensAndFailuresArePerEntry) {
  script->answer = [](const http_request& req,
                      size_t) -> caf::expected<http_response> {
    if (req.body.value.find(R"("Id":"10")") != std::string::npos)
      return answer(400, R"({"__type":"com.amazonaws.sqs#AccessDenied","message":"denied"})");
    return answer(200, canned("sqs_delete_batch_partial.json"));
  };
  auto sqs = spawn_sqs();
  std::vector<std::string> receipts;
  for (int i = 0; i < 12; ++i)
    receipts.push_back("r" + std::to_string(i));
  auto reply = spawn_requester<batch_result>(sqs, budget(), atom::remove_v, receipts);
  advance(1s);
  ASSERT_TRUE(reply->has_value() && **reply);
  auto& result = ***reply;
  ASSERT_EQ(script->seen.size(), 2u);
  // First call: entries 0 and 2 succeeded, 1 failed, 3..9 unanswered.
  EXPECT_EQ(result.succeeded, (std::vector<std::string>{"r0", "r2"}));
  ASSERT_EQ(result.failed.size(), 10u);
  size_t rejected = 0;
  for (auto& f : result.failed) {
    if (f.id == "r10" || f.id == "r11") {
      EXPECT_EQ(f.code, "rejected");
      EXPECT_NE(f.message.find("AccessDenied: denied"), std::string::npos);
      ++rejected;
    }
  }
  EXPECT_EQ(rejected, 2u);
}

TEST_F(AwsClientTest, EmptyBatchesMakeNoCall) {
  script->answer = [](const http_request&, size_t) -> caf::expected<http_response> {
    return answer(500, "");
  };
  auto sqs = spawn_sqs();
  auto reply = spawn_requester<batch_result>(sqs, budget(), atom::enqueue_v,
                                             std::vector<outgoing_message>{});
  advance(1s);
  ASSERT_TRUE(reply->has_value() && **reply);
  EXPECT_TRUE((**reply)->succeeded.empty());
  EXPECT_TRUE(script->seen.empty());
}
