// EC2's spot interruption warning as EventBridge delivers it through SQS.
#include "messages/types.hpp"
#include "transport/ec2_event.hpp"
#include "transport/wall_clock.hpp"
#include "transport/workflow_job.hpp"

#include <gtest/gtest.h>
#include <rapidjson/document.h>

using namespace ghscale;

namespace {

/// The example of AWS's documentation ("Spot Instance interruption notices",
/// EC2 User Guide), verbatim, placeholders included.
const char* documented_example = R"({
    "version": "0",
    "id": "12345678-1234-1234-1234-123456789012",
    "detail-type": "EC2 Spot Instance Interruption Warning",
    "source": "aws.ec2",
    "account": "123456789012",
    "time": "yyyy-mm-ddThh:mm:ssZ",
    "region": "us-east-2",
    "resources": ["arn:aws:ec2:us-east-2a:instance/i-1234567890abcdef0"],
    "detail": {
        "instance-id": "i-1234567890abcdef0",
        "instance-action": "action"
    }
})";

std::string with_detail(const std::string& detail) {
  return R"({"version":"0","detail-type":"EC2 Spot Instance Interruption Warning",)"
         R"("source":"aws.ec2","detail":)" + detail + "}";
}

std::string error_of(const std::string& body) {
  auto parsed = parse_spot_interruption(body);
  EXPECT_FALSE(parsed);
  if (parsed)
    return "";
  EXPECT_EQ(parsed.error(), errc::malformed_event);
  return describe(parsed.error());
}

} // namespace

TEST(Ec2Event, DocumentedExampleNamesItsInstance) {
  auto parsed = parse_spot_interruption(documented_example);
  ASSERT_TRUE(parsed) << describe(parsed.error());
  ASSERT_TRUE(parsed->has_value());
  EXPECT_EQ(**parsed, "i-1234567890abcdef0");
}

TEST(Ec2Event, OtherBodiesAreLeftToTheJobParser) {
  job_event ev;
  ev.key = {42, 1};
  ev.repository = {"acme", "app", owner_type::organization};
  ev.installation_id = 7;
  ev.labels = {"self-hosted"};
  for (const std::string& body :
       {to_webhook_payload(ev), to_lambda_message(ev), std::string{"not json"},
        std::string{"[1,2]"}, std::string{"{}"},
        // Another EC2 event, and the warning's name from another source.
        std::string{R"({"source":"aws.ec2","detail-type":"EC2 Instance State-change Notification","detail":{}})"},
        std::string{R"({"source":"aws.health","detail-type":"EC2 Spot Instance Interruption Warning"})"}}) {
    auto parsed = parse_spot_interruption(body);
    ASSERT_TRUE(parsed) << body;
    EXPECT_FALSE(parsed->has_value()) << body;
  }
}

TEST(Ec2Event, BrokenWarningsSayWhatAndWhere) {
  EXPECT_EQ(error_of(with_detail("null")),
            "malformed_event: spot interruption warning: missing or not an "
            "object at $.detail");
  EXPECT_EQ(error_of(with_detail(R"({"instance-action":"terminate"})")),
            "malformed_event: spot interruption warning: missing at "
            "$.detail.instance-id");
  EXPECT_EQ(error_of(with_detail(R"({"instance-id":17,"instance-action":"terminate"})")),
            "malformed_event: spot interruption warning: not a string at "
            "$.detail.instance-id");
  EXPECT_EQ(error_of(with_detail(R"({"instance-id":"i-1234567890abcdef0"})")),
            "malformed_event: spot interruption warning: missing at "
            "$.detail.instance-action");
  EXPECT_EQ(error_of(with_detail(R"({"instance-id":"i-1234567890abcdef0","instance-action":""})")),
            "malformed_event: spot interruption warning: empty at "
            "$.detail.instance-action");
}

TEST(Ec2Event, ErrorsNeverQuoteTheBody) {
  auto secret = std::string{"i-SECRETSECRETSECRET"};
  auto text = error_of(with_detail(R"({"instance-id":")" + secret
                                   + R"(","instance-action":"terminate"})"));
  EXPECT_EQ(text, "malformed_event: spot interruption warning: not an EC2 "
                  "instance id at $.detail.instance-id");
  EXPECT_EQ(text.find("SECRET"), std::string::npos);
}

TEST(Ec2Event, GeneratedWarningHasTheRealShapeAndParsesBack) {
  auto at = parse_rfc3339("2026-11-22T13:31:09Z");
  ASSERT_TRUE(at);
  auto body = to_spot_interruption_event("i-0123456789abcdef0", *at);
  rapidjson::Document doc;
  doc.Parse(body.c_str());
  ASSERT_TRUE(doc.IsObject()) << body;
  EXPECT_STREQ(doc["version"].GetString(), "0");
  EXPECT_STREQ(doc["source"].GetString(), "aws.ec2");
  EXPECT_STREQ(doc["detail-type"].GetString(),
               "EC2 Spot Instance Interruption Warning");
  EXPECT_STREQ(doc["account"].GetString(), "123456789012");
  EXPECT_STREQ(doc["time"].GetString(), "2026-11-22T13:31:09Z");
  EXPECT_STREQ(doc["region"].GetString(), "us-east-1");
  ASSERT_TRUE(doc["resources"].IsArray());
  ASSERT_EQ(doc["resources"].Size(), 1u);
  EXPECT_STREQ(doc["resources"][0].GetString(),
               "arn:aws:ec2:us-east-1a:instance/i-0123456789abcdef0");
  EXPECT_STREQ(doc["detail"]["instance-action"].GetString(), "terminate");
  // A UUID: 8-4-4-4-12 hex digits, the same for the same warning.
  std::string id = doc["id"].GetString();
  ASSERT_EQ(id.size(), 36u);
  for (auto dash : {8u, 13u, 18u, 23u})
    EXPECT_EQ(id[dash], '-');
  EXPECT_EQ(body, to_spot_interruption_event("i-0123456789abcdef0", *at));
  EXPECT_NE(body, to_spot_interruption_event("i-0123456789abcdef1", *at));
  auto parsed = parse_spot_interruption(body);
  ASSERT_TRUE(parsed && parsed->has_value());
  EXPECT_EQ(**parsed, "i-0123456789abcdef0");
  // A job parser that is handed it anyway rejects it.
  EXPECT_FALSE(parse_job_event(body));
}
