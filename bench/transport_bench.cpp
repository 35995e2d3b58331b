// What the transport costs per message, without a network: SigV4 signing,
// JSON parsing (SQS answers, webhook bodies, GitHub answers), XML parsing
// (EC2 answers) and RS256 App JWTs. Google Benchmark prints the time per
// call and, where a call carries several messages, items per second.
//
//   build/transport_bench [--benchmark_repetitions=3 --benchmark_report_aggregates_only=true]
#include "transport/aws_protocol.hpp"
#include "transport/digest.hpp"
#include "transport/ec2_protocol.hpp"
#include "transport/github_jwt.hpp"
#include "transport/github_rest.hpp"
#include "transport/sigv4.hpp"
#include "transport/sqs_protocol.hpp"
#include "transport/wall_clock.hpp"
#include "transport/workflow_job.hpp"

#include <benchmark/benchmark.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <chrono>
#include <string>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

const aws_credentials creds{"AKIDEXAMPLE", {"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"},
                            {"session-token"}, caf::timespan{0}, "bench"};
const aws_endpoint sqs_ep{"https://sqs.eu-west-1.amazonaws.com/", {"eu-west-1", "sqs"}};
const aws_endpoint ec2_ep{"https://ec2.eu-west-1.amazonaws.com/", {"eu-west-1", "ec2"}};
const std::string queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/ghscale-jobs";

std::string webhook_body(int64_t job_id) {
  return R"({"action":"queued","workflow_job":{"id":)" + std::to_string(job_id)
         + R"(,"run_id":10208497425,"run_attempt":1,"status":"queued",)"
           R"("labels":["self-hosted","linux","x64"],"name":"build linux-x64",)"
           R"("workflow_name":"CI","head_branch":"main","created_at":"2026-11-22T09:15:02Z"},)"
           R"("repository":{"name":"octo-repo","full_name":"octo-org/octo-repo",)"
           R"("owner":{"login":"octo-org","type":"Organization"}},)"
           R"("organization":{"login":"octo-org"},"installation":{"id":4242}})";
}

/// A ReceiveMessage answer with 10 webhook bodies, as SQS's JSON protocol
/// writes it (bodies are JSON strings inside JSON).
std::string sqs_receive_answer() {
  std::string out = R"({"Messages":[)";
  for (int i = 0; i < 10; ++i) {
    std::string body;
    for (char c : webhook_body(1000 + i))
      body += c == '"' ? std::string{"\\\""} : std::string(1, c);
    out += (i ? "," : "") + std::string{R"({"MessageId":"m-)"} + std::to_string(i)
           + R"(","ReceiptHandle":"AQEB)" + std::string(300, 'x') + std::to_string(i)
           + R"(","MD5OfBody":"0123456789abcdef0123456789abcdef","Body":")" + body
           + R"(","Attributes":{"ApproximateReceiveCount":"1","SentTimestamp":"1763800000000"}})";
  }
  return out + "]}";
}

std::string create_fleet_answer(int instances) {
  std::string ids;
  for (int i = 0; i < instances; ++i)
    ids += "<item>i-0" + std::to_string(1000000 + i) + "abcdef</item>";
  return R"(<?xml version="1.0" encoding="UTF-8"?>
<CreateFleetResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
<requestId>5f8c1b7e-0000-4000-8000-000000000000</requestId><fleetId>fleet-1234</fleetId>
<errorSet/><fleetInstanceSet><item><launchTemplateAndOverrides><launchTemplateSpecification>
<launchTemplateName>ghscale-runner</launchTemplateName><version>1</version></launchTemplateSpecification>
<overrides><instanceType>m5.large</instanceType><subnetId>subnet-1</subnetId></overrides>
</launchTemplateAndOverrides><lifecycle>spot</lifecycle><instanceIds>)"
         + ids + R"(</instanceIds><instanceType>m5.large</instanceType></item></fleetInstanceSet>
</CreateFleetResponse>)";
}

std::string describe_answer(int instances) {
  std::string items;
  for (int i = 0; i < instances; ++i)
    items += "<item><instanceId>i-0" + std::to_string(1000000 + i)
             + "</instanceId><instanceType>m5.large</instanceType>"
               "<launchTime>2026-11-22T09:15:02.000Z</launchTime>"
               "<instanceState><code>16</code><name>running</name></instanceState>"
               "<instanceLifecycle>spot</instanceLifecycle><tagSet>"
               "<item><key>ghscale:pool</key><value>linux</value></item>"
               "<item><key>ghscale:token</key><value>tok-1</value></item></tagSet></item>";
  return R"(<?xml version="1.0" encoding="UTF-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/">
<requestId>r-1</requestId><reservationSet><item><reservationId>r-1</reservationId>
<instancesSet>)" + items + "</instancesSet></item></reservationSet></DescribeInstancesResponse>";
}

fleet_request fleet_call(int count) {
  fleet_request req;
  req.client_token = "ghscale-linux-42";
  req.launch_template = "ghscale-runner";
  req.instance_types = {"m5.large", "c5.large", "m6i.large"};
  req.subnets = {"subnet-1", "subnet-2", "subnet-3"};
  req.capacity = capacity_type::spot;
  req.count = count;
  req.tags = {{"ghscale:pool", "linux"}, {"ghscale:token", req.client_token}};
  return req;
}

/// Signs a copy of `base` per iteration (signing changes the request).
void BM_SigV4_Sign(benchmark::State& state, const http_request& base,
                   const sigv4_scope& scope) {
  auto now = wall_now();
  for (auto _ : state) {
    auto req = base;
    sign_request(req, creds, scope, now);
    benchmark::DoNotOptimize(req);
  }
}
BENCHMARK_CAPTURE(BM_SigV4_Sign, SqsReceive,
                  sqs_receive(sqs_ep, queue_url, receive_request{}, 30s), sqs_ep.scope);
BENCHMARK_CAPTURE(BM_SigV4_Sign, Ec2CreateFleet100,
                  ec2_create_fleet(ec2_ep, fleet_call(100), 30s), ec2_ep.scope);

void BM_Json_ParseSqsReceive10(benchmark::State& state) {
  auto body = sqs_receive_answer();
  clock_bridge clocks{wall_now(), caf::timespan{0}};
  for (auto _ : state) {
    auto batch = parse_sqs_receive(body, clocks, "bench");
    benchmark::DoNotOptimize(batch);
  }
  state.SetItemsProcessed(state.iterations() * 10);
}
BENCHMARK(BM_Json_ParseSqsReceive10);

void BM_Json_ParseWorkflowJob(benchmark::State& state) {
  auto body = webhook_body(1000);
  for (auto _ : state) {
    auto ev = parse_job_event(body);
    benchmark::DoNotOptimize(ev);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_Json_ParseWorkflowJob);

void BM_Xml_ParseCreateFleet(benchmark::State& state) {
  auto n = static_cast<int>(state.range(0));
  auto body = create_fleet_answer(n);
  auto req = fleet_call(n);
  for (auto _ : state) {
    auto res = parse_create_fleet(body, req, "bench");
    benchmark::DoNotOptimize(res);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_Xml_ParseCreateFleet)->Arg(10)->Arg(100);

void BM_Xml_ParseDescribeInstances(benchmark::State& state) {
  auto n = static_cast<int>(state.range(0));
  auto body = describe_answer(n);
  clock_bridge clocks{wall_now(), caf::timespan{0}};
  for (auto _ : state) {
    auto page = parse_describe_instances(body, clocks, "bench");
    benchmark::DoNotOptimize(page);
  }
  state.SetItemsProcessed(state.iterations() * n);
}
BENCHMARK(BM_Xml_ParseDescribeInstances)->Arg(100)->Arg(1000);

secret_string fresh_rsa_pem() {
  EVP_PKEY* key = EVP_RSA_gen(2048);
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  auto len = BIO_get_mem_data(bio, &data);
  secret_string pem{std::string{data, static_cast<size_t>(len)}};
  BIO_free(bio);
  EVP_PKEY_free(key);
  return pem;
}

void BM_Jwt_SignRs256(benchmark::State& state) {
  auto key = load_app_private_key(fresh_rsa_pem());
  if (!key) {
    state.SkipWithError("could not load the generated key");
    return;
  }
  for (auto _ : state) {
    auto jwt = sign_app_jwt(*key, 9001, wall_now(), random_hex(16));
    benchmark::DoNotOptimize(jwt);
  }
}
BENCHMARK(BM_Jwt_SignRs256);

github_request jit_call() {
  github_request req;
  req.op = github_op::generate_jit_config;
  req.installation_id = 4242;
  req.credential = secret_string{"ghs_" + std::string(36, 'a')};
  req.target = repository_ref{"octo-org", "", owner_type::organization};
  req.runner_name = "linux-i-0123456789abcdef0";
  req.labels = {"self-hosted", "linux", "x64"};
  req.runner_group = "Default";
  return req;
}

void BM_Github_BuildJitRequest(benchmark::State& state) {
  github_endpoint ep;
  auto req = jit_call();
  for (auto _ : state) {
    auto http = build_github_request(ep, req, 10s);
    benchmark::DoNotOptimize(http);
  }
}
BENCHMARK(BM_Github_BuildJitRequest);

void BM_Json_ParseGithubJit(benchmark::State& state) {
  auto req = jit_call();
  http_response res;
  res.status = 201;
  res.headers = {{"x-ratelimit-limit", "15000"}, {"x-ratelimit-remaining", "14990"},
                 {"x-ratelimit-reset", "1763800000"}, {"content-type", "application/json"}};
  res.body.value = R"({"runner":{"id":23,"name":"linux-i-0123456789abcdef0","os":"unknown",)"
                   R"("status":"offline","busy":false,"labels":[{"id":1,"name":"self-hosted",)"
                   R"("type":"read-only"},{"id":2,"name":"linux","type":"read-only"}]},)"
                   R"("encoded_jit_config":")"
                   + base64(std::string(1200, 'j')) + R"("})";
  clock_bridge clocks{wall_now(), caf::timespan{0}};
  for (auto _ : state) {
    auto parsed = parse_github_response(req, res, clocks);
    benchmark::DoNotOptimize(parsed);
  }
}
BENCHMARK(BM_Json_ParseGithubJit);

} // namespace

BENCHMARK_MAIN();
