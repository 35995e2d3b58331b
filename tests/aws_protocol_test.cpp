// The SQS, EC2 and SSM wire protocols as pure functions: requests built byte
// for byte as the services expect them, and canned answers (tests/data/aws/)
// parsed, including partial failures, error bodies and pagination. Also the
// client-side token bucket.
#include "actors/token_bucket.hpp"
#include "transport/aws_protocol.hpp"
#include "transport/ec2_protocol.hpp"
#include "transport/sqs_protocol.hpp"
#include "transport/ssm_protocol.hpp"
#include "transport/url.hpp"

#include "tests/aws_canned.hpp"

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <fstream>
#include <map>
#include <sstream>
#include <string>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

using ghscale::testing::canned;

aws_endpoint test_endpoint(const std::string& service) {
  return {"https://" + service + ".us-east-1.amazonaws.com/", {"us-east-1", service}};
}

/// A form body as an ordered map (keys are unique in AWS query bodies).
std::map<std::string, std::string> form_fields(const std::string& body) {
  std::map<std::string, std::string> out;
  std::istringstream in{body};
  std::string pair;
  while (std::getline(in, pair, '&')) {
    auto eq = pair.find('=');
    out[uri_decode(pair.substr(0, eq))] = uri_decode(pair.substr(eq + 1));
  }
  return out;
}

rapidjson::Document json_of(const http_request& req) {
  rapidjson::Document doc;
  doc.Parse(req.body.value.c_str());
  EXPECT_FALSE(doc.HasParseError());
  return doc;
}

std::string header(const http_request& req, const std::string& name) {
  auto value = find_header(req.headers, name);
  return value != nullptr ? *value : std::string{};
}

} // namespace

// -- endpoints and errors ------------------------------------------------------

TEST(AwsEndpoint, RegionDefaultsOverridesAndChina) {
  aws_config aws;
  aws.region = "eu-west-1";
  auto sqs = service_endpoint(aws, "sqs");
  EXPECT_EQ(sqs.url, "https://sqs.eu-west-1.amazonaws.com/");
  EXPECT_EQ(sqs.scope.region, "eu-west-1");
  EXPECT_EQ(sqs.scope.service, "sqs");
  aws.ec2_endpoint = "http://127.0.0.1:5000";
  EXPECT_EQ(service_endpoint(aws, "ec2").url, "http://127.0.0.1:5000");
  EXPECT_EQ(service_endpoint(aws, "ec2").scope.service, "ec2");
  EXPECT_EQ(service_endpoint(aws, "ssm").url, "https://ssm.eu-west-1.amazonaws.com/");
  aws.region = "cn-north-1";
  EXPECT_EQ(service_endpoint(aws, "ssm").url, "https://ssm.cn-north-1.amazonaws.com.cn/");
}

TEST(AwsError, JsonTypeIsShortenedAndQueryHeaderWins) {
  auto err = parse_json_error(400, {}, canned("sqs_queue_does_not_exist.json"));
  EXPECT_EQ(err.code, "QueueDoesNotExist");
  EXPECT_EQ(err.message, "The specified queue does not exist.");
  EXPECT_FALSE(err.retryable());
  auto with_header = parse_json_error(
    400, {{"x-amzn-query-error", "AWS.SimpleQueueService.NonExistentQueue;Sender"}},
    canned("sqs_queue_does_not_exist.json"));
  EXPECT_EQ(with_header.code, "AWS.SimpleQueueService.NonExistentQueue");
  auto capital = parse_json_error(400, {}, R"({"__type":"ThrottlingException","Message":"Rate exceeded"})");
  EXPECT_EQ(capital.message, "Rate exceeded");
  EXPECT_TRUE(capital.throttled());
  EXPECT_TRUE(capital.retryable());
}

TEST(AwsError, UnreadableBodiesFallBackToTheStatus) {
  auto err = parse_json_error(503, {}, "<html>Service Unavailable</html>");
  EXPECT_EQ(err.code, "HTTP 503");
  EXPECT_TRUE(err.message.empty());
  EXPECT_TRUE(err.retryable());
  EXPECT_FALSE(err.throttled());
}

TEST(AwsError, Ec2XmlErrors) {
  auto err = parse_xml_error(503, canned("ec2_throttled.xml"));
  EXPECT_EQ(err.code, "RequestLimitExceeded");
  EXPECT_EQ(err.message, "Request limit exceeded.");
  EXPECT_TRUE(err.throttled());
  http_response res{400, {}, secret_string{canned("ec2_instance_not_found.xml")}};
  auto parsed = parse_aws_error(res);
  ASSERT_TRUE(parsed);
  EXPECT_EQ(parsed->code, "InvalidInstanceID.NotFound");
  EXPECT_FALSE(parse_aws_error(http_response{200, {}, secret_string{"<ok/>"}}));
}

TEST(AwsError, EveryPublishedThrottlingCodeIsThrottled) {
  for (auto code : {"RequestLimitExceeded", "Throttling", "ThrottlingException",
                    "RequestThrottled", "TooManyRequestsException",
                    "ProvisionedThroughputExceededException", "SlowDown",
                    "EC2ThrottledException"})
    EXPECT_TRUE((aws_error{400, code, ""}.throttled())) << code;
  EXPECT_FALSE((aws_error{400, "AccessDenied", ""}.throttled()));
}

TEST(AwsError, MapsToGhscaleErrorsWithWhatAndWhere) {
  const std::string what = "SQS ReceiveMessage on https://sqs.us-east-1.amazonaws.com/1/q";
  auto throttled = to_error({400, "RequestThrottled", "slow down"}, what);
  EXPECT_EQ(throttled, errc::throttled);
  EXPECT_EQ(describe(throttled),
            "throttled: " + what + ": RequestThrottled: slow down");
  EXPECT_EQ(to_error({500, "InternalError", ""}, what), errc::backend_failure);
  EXPECT_EQ(to_error({400, "QueueDoesNotExist", ""}, what), errc::not_found);
  EXPECT_EQ(to_error({400, "InvalidInstanceID.NotFound", ""}, what), errc::not_found);
  EXPECT_EQ(to_error({404, "HTTP 404", ""}, what), errc::not_found);
  auto denied = to_error({403, "SignatureDoesNotMatch", "signature mismatch"}, what);
  EXPECT_EQ(denied, errc::rejected);
  EXPECT_EQ(describe(denied),
            "rejected: " + what + ": SignatureDoesNotMatch: signature mismatch");
}

// -- SQS -------------------------------------------------------------------------

TEST(SqsProtocol, ReceiveIsALongPollWithReceiveCounts) {
  receive_request req;
  req.max_messages = 25; // SQS allows 10
  req.wait = 20s;
  req.visibility = 90s;
  auto http = sqs_receive(test_endpoint("sqs"), "https://sqs.us-east-1.amazonaws.com/1/jobs",
                          req, 5s);
  EXPECT_EQ(http.method, "POST");
  EXPECT_EQ(http.url, "https://sqs.us-east-1.amazonaws.com/");
  EXPECT_EQ(header(http, "content-type"), "application/x-amz-json-1.0");
  EXPECT_EQ(header(http, "x-amz-target"), "AmazonSQS.ReceiveMessage");
  EXPECT_EQ(http.timeout, 25s); // the wait plus the call's own timeout
  auto body = json_of(http);
  EXPECT_STREQ(body["QueueUrl"].GetString(), "https://sqs.us-east-1.amazonaws.com/1/jobs");
  EXPECT_EQ(body["MaxNumberOfMessages"].GetInt(), 10);
  EXPECT_EQ(body["WaitTimeSeconds"].GetInt(), 20);
  EXPECT_EQ(body["VisibilityTimeout"].GetInt(), 90);
  for (auto name : {"MessageSystemAttributeNames", "AttributeNames"}) {
    ASSERT_TRUE(body[name].IsArray()) << name;
    EXPECT_STREQ(body[name][0].GetString(), "ApproximateReceiveCount");
  }
  ASSERT_TRUE(body["MessageAttributeNames"].IsArray());
  EXPECT_STREQ(body["MessageAttributeNames"][0].GetString(), "All");
}

TEST(SqsProtocol, ParsesReceivedMessages) {
  clock_bridge clocks{std::chrono::milliseconds{1795179600000} + 10s, 1000s};
  auto batch = parse_sqs_receive(canned("sqs_receive.json"), clocks, "SQS ReceiveMessage");
  ASSERT_TRUE(batch) << describe(batch.error());
  ASSERT_EQ(batch->messages.size(), 2u);
  auto& first = batch->messages[0];
  EXPECT_EQ(first.message_id, "5fea7756-0ea4-451a-a703-a558b933e274");
  EXPECT_EQ(first.receipt, "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a");
  EXPECT_EQ(first.body, R"({"action":"queued","workflow_job":{"id":42}})");
  EXPECT_EQ(first.receive_count, 3);
  EXPECT_EQ(first.sent_at, 990s); // sent 10 s before the bridge was taken
  EXPECT_EQ(batch->messages[1].receive_count, 1);
  EXPECT_EQ(batch->messages[1].sent_at, 0s);
  auto empty = parse_sqs_receive("{}", clocks, "SQS ReceiveMessage");
  ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->messages.empty());
  auto broken = parse_sqs_receive("{\"Messages\":[", clocks, "SQS ReceiveMessage on q");
  ASSERT_FALSE(broken);
  EXPECT_EQ(broken.error(), errc::backend_failure);
  EXPECT_NE(describe(broken.error()).find("SQS ReceiveMessage on q: malformed answer"),
            std::string::npos);
}

TEST(SqsProtocol, BatchEntryIdsAreIndexesOfTheWholeBatch) {
  std::vector<std::string> receipts;
  for (int i = 0; i < 12; ++i)
    receipts.push_back("r" + std::to_string(i));
  auto ep = test_endpoint("sqs");
  auto first = json_of(sqs_delete_batch(ep, "q", receipts, 0, 5s));
  EXPECT_EQ(first["Entries"].Size(), 10u);
  auto second_req = sqs_delete_batch(ep, "q", receipts, 10, 5s);
  EXPECT_EQ(header(second_req, "x-amz-target"), "AmazonSQS.DeleteMessageBatch");
  auto second = json_of(second_req);
  ASSERT_EQ(second["Entries"].Size(), 2u);
  EXPECT_STREQ(second["Entries"][0]["Id"].GetString(), "10");
  EXPECT_STREQ(second["Entries"][1]["ReceiptHandle"].GetString(), "r11");
}

TEST(SqsProtocol, VisibilityAndSendEntries) {
  auto ep = test_endpoint("sqs");
  auto vis = sqs_visibility_batch(ep, "q", {{"r0", 90s}, {"r1", 48h}}, 0, 5s);
  EXPECT_EQ(header(vis, "x-amz-target"), "AmazonSQS.ChangeMessageVisibilityBatch");
  auto vis_body = json_of(vis);
  EXPECT_EQ(vis_body["Entries"][0]["VisibilityTimeout"].GetInt(), 90);
  EXPECT_EQ(vis_body["Entries"][1]["VisibilityTimeout"].GetInt(), 43200); // 12 h cap
  auto send = sqs_send_batch(ep, "q", {{"hello \"world\"", 0s}, {"later", 2h}}, 0, 5s);
  EXPECT_EQ(header(send, "x-amz-target"), "AmazonSQS.SendMessageBatch");
  auto send_body = json_of(send);
  EXPECT_STREQ(send_body["Entries"][0]["MessageBody"].GetString(), "hello \"world\"");
  EXPECT_STREQ(send_body["Entries"][1]["Id"].GetString(), "1");
  EXPECT_EQ(send_body["Entries"][1]["DelaySeconds"].GetInt(), 900); // 15 min cap
}

// A dead letter says why and where from in String message attributes;
// SQS refuses an empty StringValue, so an empty attribute is left out.
TEST(SqsProtocol, MessageAttributesGoOutAndComeBackAsStrings) {
  outgoing_message dead{"poison", 0s, {}};
  dead.attributes = {{"ghscale.reason", "received 5 times \"poison\""},
                     {"ghscale.source-queue", "jobs"},
                     {"empty", ""}};
  auto send = json_of(sqs_send_batch(test_endpoint("sqs"), "q", {dead, {"plain", 0s, {}}}, 0, 5s));
  auto& attrs = send["Entries"][0]["MessageAttributes"];
  ASSERT_TRUE(attrs.IsObject());
  EXPECT_EQ(attrs.MemberCount(), 2u);
  EXPECT_STREQ(attrs["ghscale.reason"]["DataType"].GetString(), "String");
  EXPECT_STREQ(attrs["ghscale.reason"]["StringValue"].GetString(), "received 5 times \"poison\"");
  EXPECT_FALSE(send["Entries"][1].HasMember("MessageAttributes"));

  clock_bridge clocks{1000s, 1000s};
  auto got = parse_sqs_receive(R"({"Messages":[{"MessageId":"m","ReceiptHandle":"r","Body":"b",
    "MessageAttributes":{
      "ghscale.reason":{"DataType":"String","StringValue":"why"},
      "n":{"DataType":"Number","StringValue":"5"},
      "bin":{"DataType":"Binary","BinaryValue":"AAE="}}}]})", clocks, "SQS ReceiveMessage");
  ASSERT_TRUE(got) << describe(got.error());
  ASSERT_EQ(got->messages.size(), 1u);
  EXPECT_EQ(got->messages[0].attributes, (message_attributes{{"ghscale.reason", "why"}}));
}

TEST(SqsProtocol, BatchPartialFailuresArePerEntry) {
  std::vector<std::string> names{"r0", "r1", "r2"};
  auto result = parse_sqs_batch(canned("sqs_delete_batch_partial.json"), names, 0, 3, "SQS");
  ASSERT_TRUE(result) << describe(result.error());
  EXPECT_EQ(result->succeeded, (std::vector<std::string>{"r0", "r2"}));
  ASSERT_EQ(result->failed.size(), 1u);
  EXPECT_EQ(result->failed[0].id, "r1");
  EXPECT_EQ(result->failed[0].code, "ReceiptHandleIsInvalid");
  EXPECT_EQ(result->failed[0].message, "The input receipt handle is invalid.");
}

TEST(SqsProtocol, BatchEntriesTheAnswerLeavesOutFail) {
  std::vector<std::string> names{"a", "b", "c", "d"};
  auto result = parse_sqs_batch(R"({"Successful":[{"Id":"2"}]})", names, 2, 2, "SQS");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->succeeded, (std::vector<std::string>{"c"}));
  ASSERT_EQ(result->failed.size(), 1u);
  EXPECT_EQ(result->failed[0].id, "d");
  EXPECT_EQ(result->failed[0].code, "NoResult");
  // An Id outside this call, or reported twice, is a malformed answer.
  EXPECT_FALSE(parse_sqs_batch(R"({"Successful":[{"Id":"0"}]})", names, 2, 2, "SQS"));
  EXPECT_FALSE(parse_sqs_batch(R"({"Successful":[{"Id":"2"}],"Failed":[{"Id":"2"}]})",
                               names, 2, 2, "SQS"));
}

TEST(SqsProtocol, QueueDepth) {
  auto req = sqs_queue_attributes(test_endpoint("sqs"), "q", 5s);
  EXPECT_EQ(header(req, "x-amz-target"), "AmazonSQS.GetQueueAttributes");
  EXPECT_EQ(json_of(req)["AttributeNames"].Size(), 3u);
  auto depth = parse_sqs_depth(canned("sqs_attributes.json"), "SQS");
  ASSERT_TRUE(depth);
  EXPECT_EQ(depth->visible, 12);
  EXPECT_EQ(depth->in_flight, 3);
  EXPECT_EQ(depth->delayed, 1);
  EXPECT_FALSE(parse_sqs_depth("{}", "SQS"));
}

// -- EC2 -------------------------------------------------------------------------

TEST(Ec2Protocol, CreateFleetInstantWithOverridesTagsAndClientToken) {
  fleet_request req;
  req.client_token = "launch-7f3a";
  req.launch_template = "ghscale-runner";
  req.instance_types = {"m5.large", "c5.large"};
  req.subnets = {"subnet-a", "subnet-b"};
  req.capacity = capacity_type::spot;
  req.count = 3;
  req.tags = {{"ghscale:pool", "linux"}, {"ghscale:token", "launch-7f3a"}};
  auto http = ec2_create_fleet(test_endpoint("ec2"), req, 30s);
  EXPECT_EQ(http.method, "POST");
  EXPECT_EQ(header(http, "content-type"), "application/x-www-form-urlencoded; charset=utf-8");
  EXPECT_EQ(http.timeout, 30s);
  auto form = form_fields(http.body.value);
  std::map<std::string, std::string> expected{
    {"Action", "CreateFleet"},
    {"Version", "2016-11-15"},
    {"Type", "instant"},
    {"ClientToken", "launch-7f3a"},
    {"LaunchTemplateConfigs.1.LaunchTemplateSpecification.LaunchTemplateName", "ghscale-runner"},
    {"LaunchTemplateConfigs.1.LaunchTemplateSpecification.Version", "$Default"},
    {"LaunchTemplateConfigs.1.Overrides.1.InstanceType", "m5.large"},
    {"LaunchTemplateConfigs.1.Overrides.1.SubnetId", "subnet-a"},
    {"LaunchTemplateConfigs.1.Overrides.2.InstanceType", "m5.large"},
    {"LaunchTemplateConfigs.1.Overrides.2.SubnetId", "subnet-b"},
    {"LaunchTemplateConfigs.1.Overrides.3.InstanceType", "c5.large"},
    {"LaunchTemplateConfigs.1.Overrides.3.SubnetId", "subnet-a"},
    {"LaunchTemplateConfigs.1.Overrides.4.InstanceType", "c5.large"},
    {"LaunchTemplateConfigs.1.Overrides.4.SubnetId", "subnet-b"},
    {"TargetCapacitySpecification.TotalTargetCapacity", "3"},
    {"TargetCapacitySpecification.DefaultTargetCapacityType", "spot"},
    {"SpotOptions.AllocationStrategy", "price-capacity-optimized"},
    {"TagSpecification.1.ResourceType", "instance"},
    {"TagSpecification.1.Tag.1.Key", "ghscale:pool"},
    {"TagSpecification.1.Tag.1.Value", "linux"},
    {"TagSpecification.1.Tag.2.Key", "ghscale:token"},
    {"TagSpecification.1.Tag.2.Value", "launch-7f3a"},
  };
  EXPECT_EQ(form, expected);
  // The same request builds the same body: a retry carries the same token.
  EXPECT_EQ(ec2_create_fleet(test_endpoint("ec2"), req, 30s).body.value, http.body.value);
}

TEST(Ec2Protocol, CreateFleetByTemplateIdOnDemand) {
  fleet_request req;
  req.client_token = "t";
  req.launch_template = "lt-0123456789abcdef0";
  req.instance_types = {"m5.large"};
  req.capacity = capacity_type::on_demand;
  req.count = 1;
  auto form = form_fields(ec2_create_fleet(test_endpoint("ec2"), req, 30s).body.value);
  EXPECT_EQ(form["LaunchTemplateConfigs.1.LaunchTemplateSpecification.LaunchTemplateId"],
            "lt-0123456789abcdef0");
  EXPECT_EQ(form.count("LaunchTemplateConfigs.1.LaunchTemplateSpecification.LaunchTemplateName"), 0u);
  EXPECT_EQ(form["LaunchTemplateConfigs.1.Overrides.1.InstanceType"], "m5.large");
  EXPECT_EQ(form.count("LaunchTemplateConfigs.1.Overrides.1.SubnetId"), 0u);
  EXPECT_EQ(form["TargetCapacitySpecification.DefaultTargetCapacityType"], "on-demand");
  EXPECT_EQ(form["OnDemandOptions.AllocationStrategy"], "lowest-price");
  EXPECT_EQ(form.count("SpotOptions.AllocationStrategy"), 0u);
  EXPECT_EQ(form.count("TagSpecification.1.ResourceType"), 0u);
}

TEST(Ec2Protocol, ATemplateNameThatStartsLikeAnIdIsAName) {
  fleet_request req;
  req.client_token = "t";
  req.launch_template = "lt-ghscale-linux-x64"; // the example's names
  req.instance_types = {"m5.large"};
  req.count = 1;
  auto form = form_fields(ec2_create_fleet(test_endpoint("ec2"), req, 30s).body.value);
  EXPECT_EQ(form["LaunchTemplateConfigs.1.LaunchTemplateSpecification.LaunchTemplateName"],
            "lt-ghscale-linux-x64");
  EXPECT_EQ(form.count("LaunchTemplateConfigs.1.LaunchTemplateSpecification.LaunchTemplateId"), 0u);
}

TEST(Ec2Protocol, PartialCreateFleetKeepsInstancesAndErrors) {
  fleet_request req;
  req.capacity = capacity_type::on_demand;
  auto result = parse_create_fleet(canned("create_fleet_partial.xml"), req, "EC2 CreateFleet");
  ASSERT_TRUE(result) << describe(result.error());
  ASSERT_EQ(result->instances.size(), 2u);
  for (auto& instance : result->instances) {
    EXPECT_EQ(instance.instance_type, "m5.large");
    EXPECT_EQ(instance.subnet, "subnet-aaaa1111");
    EXPECT_EQ(instance.capacity, capacity_type::spot);
  }
  EXPECT_EQ(result->instances[0].instance_id, "i-0aaaaaaaaaaaaaaa1");
  EXPECT_EQ(result->instances[1].instance_id, "i-0aaaaaaaaaaaaaaa2");
  ASSERT_EQ(result->errors.size(), 1u);
  auto& error = result->errors[0];
  EXPECT_EQ(error.code, "InsufficientInstanceCapacity");
  EXPECT_EQ(error.message, "There is no Spot capacity available that matches your request.");
  EXPECT_EQ(error.instance_type, "c5.large");
  EXPECT_EQ(error.subnet, "subnet-bbbb2222");
  EXPECT_EQ(error.capacity, capacity_type::spot);
  EXPECT_FALSE(parse_create_fleet("<CreateFleetResponse>", req, "EC2 CreateFleet"));
}

TEST(Ec2Protocol, DescribeInstancesFiltersAndPages) {
  instance_filter filter;
  filter.tags = {{"ghscale:pool", "linux"}};
  auto first = form_fields(
    ec2_describe_instances(test_endpoint("ec2"), filter, "", 30s).body.value);
  EXPECT_EQ(first["Action"], "DescribeInstances");
  EXPECT_EQ(first["Filter.1.Name"], "tag:ghscale:pool");
  EXPECT_EQ(first["Filter.1.Value.1"], "linux");
  EXPECT_EQ(first["Filter.2.Name"], "instance-state-name");
  EXPECT_EQ(first["Filter.2.Value.1"], "pending");
  EXPECT_EQ(first["Filter.2.Value.5"], "stopped");
  EXPECT_EQ(first.count("Filter.2.Value.6"), 0u);
  EXPECT_EQ(first["MaxResults"], "1000");
  EXPECT_EQ(first.count("NextToken"), 0u);
  filter.include_terminated = true;
  auto next = form_fields(
    ec2_describe_instances(test_endpoint("ec2"), filter, "page-2-token", 30s).body.value);
  EXPECT_EQ(next.count("Filter.2.Name"), 0u);
  EXPECT_EQ(next["NextToken"], "page-2-token");
}

TEST(Ec2Protocol, ParsesDescribeInstancesPages) {
  auto launch = parse_rfc3339("2026-11-22T13:00:00Z");
  ASSERT_TRUE(launch);
  clock_bridge clocks{*launch + 60s, 500s}; // the bridge taken a minute later
  auto page1 = parse_describe_instances(canned("describe_instances_page1.xml"), clocks, "EC2");
  ASSERT_TRUE(page1) << describe(page1.error());
  EXPECT_EQ(page1->next_token, "page-2-token");
  ASSERT_EQ(page1->instances.size(), 1u);
  auto& spot = page1->instances[0];
  EXPECT_EQ(spot.instance_id, "i-0aaaaaaaaaaaaaaa1");
  EXPECT_EQ(spot.instance_type, "m5.large");
  EXPECT_EQ(spot.state, instance_state::running);
  EXPECT_EQ(spot.capacity, capacity_type::spot);
  EXPECT_EQ(spot.launched_at, 440s);
  ASSERT_EQ(spot.tags.size(), 2u);
  EXPECT_EQ(spot.tags[0].key, "ghscale:pool");
  EXPECT_EQ(spot.tags[1].value, "runner & co");
  auto page2 = parse_describe_instances(canned("describe_instances_page2.xml"), clocks, "EC2");
  ASSERT_TRUE(page2);
  EXPECT_TRUE(page2->next_token.empty());
  ASSERT_EQ(page2->instances.size(), 2u);
  EXPECT_EQ(page2->instances[0].state, instance_state::pending);
  EXPECT_EQ(page2->instances[0].capacity, capacity_type::on_demand);
  EXPECT_EQ(page2->instances[0].launched_at, 770s);
  EXPECT_EQ(page2->instances[1].state, instance_state::shutting_down);
  EXPECT_TRUE(page2->instances[1].tags.empty());
}

TEST(Ec2Protocol, TerminateInstancesPerInstance) {
  std::vector<std::string> ids{"i-0aaaaaaaaaaaaaaa1", "i-0aaaaaaaaaaaaaaa9"};
  auto form = form_fields(ec2_terminate_instances(test_endpoint("ec2"), ids, 30s).body.value);
  EXPECT_EQ(form["Action"], "TerminateInstances");
  EXPECT_EQ(form["InstanceId.1"], "i-0aaaaaaaaaaaaaaa1");
  EXPECT_EQ(form["InstanceId.2"], "i-0aaaaaaaaaaaaaaa9");
  auto result = parse_terminate_instances(canned("terminate_instances.xml"), ids, "EC2");
  ASSERT_TRUE(result);
  EXPECT_EQ(result->succeeded, (std::vector<std::string>{"i-0aaaaaaaaaaaaaaa1"}));
  ASSERT_EQ(result->failed.size(), 1u);
  EXPECT_EQ(result->failed[0].id, "i-0aaaaaaaaaaaaaaa9");
}

TEST(Ec2Protocol, FindsTheUnknownIdsAnErrorNames) {
  auto err = parse_xml_error(400, canned("ec2_instance_not_found.xml"));
  std::vector<std::string> ids{"i-0ccccccccccccccc1", "i-0ccccccccccccccc", "i-0ccccccccccccccc2",
                               "i-0ddddddddddddddd1"};
  EXPECT_EQ(instance_ids_named_in(err.message, ids),
            (std::vector<std::string>{"i-0ccccccccccccccc1", "i-0ccccccccccccccc2"}));
}

TEST(Ec2Protocol, CreateTags) {
  auto form = form_fields(ec2_create_tags(test_endpoint("ec2"), {"i-1", "i-2"},
                                          {{"ghscale:state", "orphaned"}}, 30s)
                            .body.value);
  std::map<std::string, std::string> expected{
    {"Action", "CreateTags"},     {"Version", "2016-11-15"},
    {"ResourceId.1", "i-1"},      {"ResourceId.2", "i-2"},
    {"Tag.1.Key", "ghscale:state"}, {"Tag.1.Value", "orphaned"},
  };
  EXPECT_EQ(form, expected);
}

// -- SSM -------------------------------------------------------------------------

TEST(SsmProtocol, PutParameterAsSecureString) {
  parameter param{"/ghscale/runners/i-1", secret_string{"jit-config"}, {{"ghscale:pool", "linux"}}};
  auto req = ssm_put_parameter(test_endpoint("ssm"), param, "alias/ghscale", 10s);
  EXPECT_EQ(header(req, "content-type"), "application/x-amz-json-1.1");
  EXPECT_EQ(header(req, "x-amz-target"), "AmazonSSM.PutParameter");
  auto body = json_of(req);
  EXPECT_STREQ(body["Name"].GetString(), "/ghscale/runners/i-1");
  EXPECT_STREQ(body["Value"].GetString(), "jit-config");
  EXPECT_STREQ(body["Type"].GetString(), "SecureString");
  EXPECT_STREQ(body["KeyId"].GetString(), "alias/ghscale");
  EXPECT_FALSE(body["Overwrite"].GetBool());
  EXPECT_STREQ(body["Tags"][0]["Key"].GetString(), "ghscale:pool");
  auto default_key = json_of(ssm_put_parameter(test_endpoint("ssm"), param, "", 10s));
  EXPECT_FALSE(default_key.HasMember("KeyId"));
}

TEST(SsmProtocol, DeleteAndGetParameter) {
  auto del = ssm_delete_parameter(test_endpoint("ssm"), "/p", 10s);
  EXPECT_EQ(header(del, "x-amz-target"), "AmazonSSM.DeleteParameter");
  EXPECT_EQ(del.body.value, R"({"Name":"/p"})");
  auto get = ssm_get_parameter(test_endpoint("ssm"), "/p", 10s);
  EXPECT_EQ(header(get, "x-amz-target"), "AmazonSSM.GetParameter");
  EXPECT_EQ(get.body.value, R"({"Name":"/p","WithDecryption":true})");
  auto value = parse_ssm_parameter_value(canned("ssm_get_parameter.json"), "SSM");
  ASSERT_TRUE(value);
  EXPECT_EQ(value->value, "-----BEGIN PRIVATE KEY-----\nMIIBVQ==\n-----END PRIVATE KEY-----\n");
  auto missing = parse_json_error(400, {}, canned("ssm_parameter_not_found.json"));
  EXPECT_EQ(missing.code, "ParameterNotFound");
  EXPECT_FALSE(parse_ssm_parameter_value("{}", "SSM"));
}

// -- token bucket ----------------------------------------------------------------

TEST(TokenBucket, BurstThenRefillRate) {
  token_bucket bucket{{50, 5}, 100s};
  for (int i = 0; i < 50; ++i)
    ASSERT_EQ(bucket.take(100s), 0s) << i;
  EXPECT_EQ(bucket.take(100s), 200ms); // one token every 1/5 s
  EXPECT_EQ(bucket.take(100s + 100ms), 100ms);
  EXPECT_EQ(bucket.take(100s + 200ms), 0s);
  EXPECT_EQ(bucket.take(100s + 200ms), 200ms);
}

TEST(TokenBucket, NeverHoldsMoreThanItsCapacity) {
  token_bucket bucket{{2, 10}, 0s};
  EXPECT_EQ(bucket.take(0s), 0s);
  EXPECT_DOUBLE_EQ(bucket.tokens(3600s), 2.0);
  EXPECT_EQ(bucket.take(3600s), 0s);
  EXPECT_EQ(bucket.take(3600s), 0s);
  EXPECT_EQ(bucket.take(3600s), 100ms);
}
