// Bounded random-input fuzzing of every parser of outside input.
//
// What is fuzzed, one TEST per parser family: the webhook delivery check
// (signature, then JSON or form-encoded bodies), workflow_job bodies (webhook,
// EventBridge and Lambda formats), EC2 spot interruption events, the SQS and
// SSM JSON answers and AWS error answers (JSON and XML), the EC2 XML answers,
// GitHub REST answers (bodies and rate-limit, retry-after and Link headers),
// AWS credentials (IMDS answers, shared files, environment), the TOML
// configuration (and durations), URL and form helpers, wall-clock times, and
// simulation traces. Inputs come from four generators, seeded
// deterministically (std::mt19937_64, three seeds):
//   1. random bytes, up to 4 KiB;
//   2. mutations of real samples (tests/data, conf/, GitHub's OpenAPI
//      examples): bit flips, inserted, deleted and duplicated bytes, splices,
//      truncation, duplicated keys, values swapped for other types, huge and
//      negative numbers, invalid UTF-8, NULs;
//   3. 200,000-deep nesting, alone and inside a valid field (ASan's larger
//      frames make a recursive parser overflow the stack all the sooner);
//   4. very long strings and many keys (about 1 MiB).
// Every call must return, with a value or an error that carries a message;
// where a parser documents a property (a round trip, a bound) it is checked
// too. Memory errors and undefined behaviour are the sanitizers' to catch (CI
// runs the unit tests under ASan + UBSan); if the process dies, the input it
// was parsing is printed first.
//
// Why bounded: CI runs this with every unit test under the sanitizers, so by
// default each parser gets a few thousand inputs (well under 20 s there). For
// a longer run:
//   GHSCALE_FUZZ_INPUTS=200000 build/parser_fuzz_test   (inputs per parser)
//   GHSCALE_FUZZ_SEED=7 build/parser_fuzz_test          (another seed set)
//
// The bugs this test found (far instants, huge trace times, deep trace
// lines, deeply dotted TOML keys) each keep a test of their own at the end.
#include "actors/embedded/trace.hpp"
#include "messages/text.hpp"
#include "transport/aws_credentials.hpp"
#include "transport/aws_protocol.hpp"
#include "transport/config_file.hpp"
#include "transport/digest.hpp"
#include "transport/ec2_event.hpp"
#include "transport/ec2_protocol.hpp"
#include "transport/github_rest.hpp"
#include "transport/json.hpp"
#include "transport/sqs_protocol.hpp"
#include "transport/ssm_protocol.hpp"
#include "transport/url.hpp"
#include "transport/wall_clock.hpp"
#include "transport/webhook.hpp"
#include "transport/workflow_job.hpp"

#include "tests/github_samples.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <initializer_list>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <iomanip>
#include <locale>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define GHSCALE_FUZZ_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GHSCALE_FUZZ_SANITIZED 1
#endif
#endif
#ifdef GHSCALE_FUZZ_SANITIZED
#include <sanitizer/common_interface_defs.h>
#endif

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

// -- budget --------------------------------------------------------------------

size_t env_number(const char* name, size_t fallback) {
  const char* text = std::getenv(name);
  if (text == nullptr || *text == '\0')
    return fallback;
  char* end = nullptr;
  auto n = std::strtoull(text, &end, 10);
  return *end == '\0' && n > 0 ? static_cast<size_t>(n) : fallback;
}

/// Generated inputs per parser (generators 1 and 2), spread over the seeds;
/// generators 3 and 4 add a fixed few dozen.
size_t inputs_per_parser() {
  static const size_t n = env_number("GHSCALE_FUZZ_INPUTS", 3000);
  return n;
}

std::vector<uint64_t> seeds() {
  auto base = static_cast<uint64_t>(env_number("GHSCALE_FUZZ_SEED", 1));
  return {base * 0x9e3779b97f4a7c15u + 1, base * 0x9e3779b97f4a7c15u + 2,
          base * 0x9e3779b97f4a7c15u + 3};
}

constexpr size_t deep = 200'000;      // nesting depth of generator 3
constexpr size_t big = 1024 * 1024;   // size of generator 4's inputs

// -- which input is being parsed, printed if the process dies -------------------

struct current_input {
  const char* parser = "";
  uint64_t seed = 0;
  size_t index = 0;
  const char* kind = "";
  const std::string* text = nullptr;
};

current_input now_parsing;

void print_escaped(std::FILE* out, std::string_view text, size_t limit) {
  for (size_t i = 0; i < std::min(text.size(), limit); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c == '\\' || c == '"')
      std::fprintf(out, "\\%c", c);
    else if (c >= 0x20 && c < 0x7f)
      std::fputc(c, out);
    else
      std::fprintf(out, "\\x%02x", c);
  }
  if (text.size() > limit)
    std::fprintf(out, "... (%zu more bytes)", text.size() - limit);
}

void print_current_input() {
  if (now_parsing.text == nullptr)
    return;
  std::fprintf(stderr, "\nparser_fuzz: died parsing %s input #%zu of seed %llu (%s, %zu bytes): \"",
               now_parsing.parser, now_parsing.index,
               static_cast<unsigned long long>(now_parsing.seed), now_parsing.kind,
               now_parsing.text->size());
  print_escaped(stderr, *now_parsing.text, 4096);
  std::fprintf(stderr, "\"\n");
  std::fflush(stderr);
}

#ifndef GHSCALE_FUZZ_SANITIZED
/// Without sanitizers: a handler on its own stack (a stack overflow leaves
/// none), which prints the input and lets the signal kill the process.
void on_fatal_signal(int sig) {
  print_current_input();
  std::signal(sig, SIG_DFL);
  std::raise(sig);
}
#endif

bool install_crash_reporter() {
#ifdef GHSCALE_FUZZ_SANITIZED
  __sanitizer_set_death_callback(print_current_input);
#else
  static std::vector<char> alternate_stack(256 * 1024);
  stack_t ss{};
  ss.ss_sp = alternate_stack.data();
  ss.ss_size = alternate_stack.size();
  sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_handler = on_fatal_signal;
  sa.sa_flags = SA_ONSTACK;
  for (int sig : {SIGSEGV, SIGBUS, SIGABRT, SIGFPE, SIGILL})
    sigaction(sig, &sa, nullptr);
#endif
  return true;
}

const bool crash_reporter_installed = install_crash_reporter();

// -- samples -------------------------------------------------------------------

std::string source_file(const std::string& relative) {
  std::ifstream in{std::string{GHSCALE_SOURCE_DIR} + "/" + relative, std::ios::binary};
  if (!in) {
    ADD_FAILURE() << "missing sample " << relative;
    return {};
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

std::vector<std::string> workflow_job_samples() {
  return {source_file("tests/data/workflow_job_queued.json"),
          source_file("tests/data/workflow_job_in_progress.json"),
          source_file("tests/data/workflow_job_completed.json")};
}

/// The three body formats parse_job_event reads.
std::vector<std::string> queue_body_samples() {
  auto out = workflow_job_samples();
  out.push_back(R"({"id":3000007,"eventType":"workflow_job","repositoryName":"lib-0",)"
                R"("repositoryOwner":"acme","installationId":4242,"repoOwnerType":"Organization",)"
                R"("labels":["self-hosted","linux","x64"],"retryCounter":2})");
  out.push_back(R"({"version":"0","id":"7bf73129","detail-type":"workflow_job","source":"github",)"
                R"("detail":)" + out[0] + "}");
  return out;
}

std::vector<std::string> spot_event_samples() {
  return {
    // AWS's documented example (EC2 User Guide), placeholders included.
    R"({"version":"0","id":"12345678-1234-1234-1234-123456789012",)"
    R"("detail-type":"EC2 Spot Instance Interruption Warning","source":"aws.ec2",)"
    R"("account":"123456789012","time":"yyyy-mm-ddThh:mm:ssZ","region":"us-east-2",)"
    R"("resources":["arn:aws:ec2:us-east-2a:instance/i-1234567890abcdef0"],)"
    R"("detail":{"instance-id":"i-1234567890abcdef0","instance-action":"action"}})",
    to_spot_interruption_event("i-0123456789abcdef0", 1795352400s),
    source_file("tests/data/workflow_job_queued.json")};
}

/// The files of tests/data/aws named `names`.
std::vector<std::string> aws_samples(std::initializer_list<const char*> names) {
  std::vector<std::string> out;
  for (auto name : names)
    out.push_back(source_file(std::string{"tests/data/aws/"} + name));
  return out;
}

std::vector<std::string> aws_json_samples() {
  return aws_samples({"sqs_receive.json", "sqs_delete_batch_partial.json",
                      "sqs_attributes.json", "sqs_queue_does_not_exist.json",
                      "ssm_get_parameter.json", "ssm_parameter_not_found.json"});
}

std::vector<std::string> ec2_xml_samples() {
  return aws_samples({"create_fleet_partial.xml", "describe_instances_page1.xml",
                      "describe_instances_page2.xml", "terminate_instances.xml",
                      "ec2_instance_not_found.xml", "ec2_throttled.xml"});
}

/// GitHub's answers, from the examples of its OpenAPI description
/// (@octokit/openapi, trimmed), and an error body.
std::vector<std::string> github_samples() {
  return {
    R"({"token":"ghs_16C7e42F292c6912E7710c838347Ae178B4a","expires_at":"2016-07-11T22:14:10Z",)"
    R"("permissions":{"issues":"write","contents":"read"},"repository_selection":"selected"})",
    R"({"token":"LLBF3JGZDX3P5PMEXLND6TS6FCWO6","expires_at":"2020-01-22T12:13:35.123-08:00"})",
    R"({"runner":{"id":23,"name":"New runner","os":"unknown","status":"offline","busy":false,)"
    R"("labels":[{"id":5,"name":"self-hosted","type":"read-only"},{"id":21,"name":"no-gpu",)"
    R"("type":"custom"}]},"encoded_jit_config":"abc123"})",
    R"({"id":399444496,"run_id":29679449,"status":"completed","conclusion":"success",)"
    R"("started_at":"2020-01-20T17:42:40Z","completed_at":"2020-01-20T17:44:39Z","name":"build",)"
    R"("steps":[{"name":"Set up job","status":"completed","conclusion":"success","number":1,)"
    R"("started_at":"2020-01-20T09:42:40.000-08:00","completed_at":"2020-01-20T09:42:41.000-08:00"}],)"
    R"("labels":["self-hosted","foo","bar"],"runner_id":1,"runner_name":"my runner",)"
    R"("runner_group_id":2,"runner_group_name":"my runner group","workflow_name":"CI"})",
    R"({"total_count":2,"runners":[{"id":23,"name":"linux_runner","os":"linux","status":"online",)"
    R"("busy":true,"ephemeral":false,"labels":[{"id":5,"name":"self-hosted","type":"read-only"},)"
    R"({"id":11,"name":"Linux","type":"read-only"}]},{"id":24,"name":"mac_runner","os":"macos",)"
    R"("status":"offline","busy":false,"ephemeral":false,"labels":[{"id":21,"name":"no-gpu",)"
    R"("type":"custom"}]}]})",
    R"({"total_count":3,"runner_groups":[{"id":1,"name":"Default","visibility":"all","default":true,)"
    R"("inherited":false,"allows_public_repositories":true,"selected_workflows":[]},)"
    R"({"id":2,"name":"ci-runners","visibility":"selected","default":false,"inherited":true,)"
    R"("selected_workflows":["octo-org/octo-repo/.github/workflows/deploy.yaml@refs/heads/main"]}]})",
    R"({"id":1,"account":{"login":"github","id":1,"type":"Organization","site_admin":false},)"
    R"("repository_selection":"all","app_id":1,"target_id":1,"target_type":"Organization",)"
    R"("permissions":{"checks":"write","metadata":"read"},"events":["push","pull_request"],)"
    R"("created_at":"2018-02-09T20:51:14Z","suspended_at":null})",
    R"({"message":"You have exceeded a secondary rate limit.",)"
    R"("documentation_url":"https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"})"};
}

std::vector<std::string> imds_samples() {
  return {R"({"Code":"Success","LastUpdated":"2026-11-22T13:00:00Z","Type":"AWS-HMAC",)"
          R"("AccessKeyId":"ASIAIMDS","SecretAccessKey":"imds-secret","Token":"imds-token",)"
          R"("Expiration":"2026-11-22T19:00:00Z"})",
          R"({"Code":"Failure","Message":"no credentials"})",
          "ghscale-runner-role\n",
          "AQAEAKmTi0P9aIiHGyIbSqMFNL2YZ0RZwoCfPLbhDOjd2g==\n"};
}

/// Shared credentials and config files, as aws_credentials_test writes them.
std::vector<std::string> ini_samples() {
  return {"# shared credentials\n[default]\naws_access_key_id = AKIADEFAULT\n"
          "aws_secret_access_key = default-secret\n\n; a comment\n[ci]\n"
          "\t# an indented comment\nAWS_Access_Key_ID=AKIACI\n"
          "aws_secret_access_key   =   ci-secret   \naws_session_token = ci-token\n"
          "[half]\naws_access_key_id = AKIAHALF\n",
          "[default]\r\nregion = eu-west-1\r\n[profile dev]\r\naws_access_key_id = AKIADEV\r\n"
          "aws_secret_access_key = dev-secret\r\ns3 =\r\n  max_concurrent_requests = 20\r\n"
          "[profile ci]\r\naws_access_key_id = AKIASHADOWED\r\n"
          "aws_secret_access_key = shadowed-secret\r\n"};
}

std::vector<std::string> config_samples() {
  std::vector<std::string> out;
  for (auto name : {"conf/ghscale.example.toml", "conf/simulate.toml",
                    "conf/simulate-budget-storm.toml", "conf/simulate-chaos-spot.toml",
                    "conf/single-instance.toml", "conf/embedded.toml"})
    out.push_back(source_file(name));
  return out;
}

/// A few lines of every kind from the shipped traces.
std::vector<std::string> trace_samples() {
  std::vector<std::string> out;
  for (auto name : {"conf/traces/matrix-storm.jsonl", "conf/traces/chaos-spot.jsonl",
                    "conf/traces/budget-storm.jsonl"}) {
    std::istringstream lines{source_file(name)};
    std::set<std::string> kinds; // what follows "at": {"at":1,"event":{"action"...
    std::string sample;
    for (std::string line; std::getline(lines, line);) {
      auto rest = line.substr(line.find(',') + 1);
      if (kinds.insert(rest.substr(0, rest.find(':', rest.find(':') + 1))).second)
        sample += line + "\n";
    }
    out.push_back(sample);
  }
  return out;
}

std::vector<std::string> url_and_form_samples() {
  return {"https://sqs.eu-west-1.amazonaws.com/123456789012/jobs?Action=x#frag",
          "http://[::1]:8080/path%20with%2Fescapes?q=a+b&payload=%7B%22a%22%3A1%7D",
          "HTTPS://api.github.com:443",
          "payload=%7B%22action%22%3A%22queued%22%7D&other=x+y%2B",
          "a=1&b=&=c&payload&payload=second"};
}

std::vector<std::string> time_samples() {
  return {"2026-11-22T13:31:09Z", "2026-11-22T13:31:09.123456789Z",
          "2020-01-22T12:13:35.123-08:00", "2026-11-22T14:00:00.000+01:00",
          "Sun, 22 Nov 2026 13:31:09 GMT", "Thu, 01 Jan 1970 00:00:00 GMT"};
}

std::vector<std::string> duration_samples() {
  return {"250ms", "20s", "5m", "1h", "1h30m", "0s", "2562047h47m16s854ms775us807ns"};
}

// -- generators ----------------------------------------------------------------

/// How a mutation sees an input: which tokens are interesting and what a
/// "value" or a "member" is.
enum class dialect { json, xml, toml, text };

using rng_t = std::mt19937_64;

size_t below(rng_t& rng, size_t n) {
  return n == 0 ? 0 : std::uniform_int_distribution<size_t>{0, n - 1}(rng);
}

bool chance(rng_t& rng, size_t percent) {
  return below(rng, 100) < percent;
}

template <class T>
const T& pick(rng_t& rng, const std::vector<T>& xs) {
  return xs[below(rng, xs.size())];
}

std::string repeat(std::string_view unit, size_t n) {
  std::string out;
  out.reserve(unit.size() * n);
  for (size_t i = 0; i < n; ++i)
    out += unit;
  return out;
}

const std::vector<std::string>& invalid_bytes() {
  static const std::vector<std::string> xs{
    "\xff", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "\x80",
    "\xf8\x88\x80\x80\x80", std::string(1, '\0'), std::string("x\0y", 3)};
  return xs;
}

/// The one of four lists that is `d`'s.
const std::vector<std::string>& of_dialect(dialect d, const std::vector<std::string>& json,
                                           const std::vector<std::string>& xml,
                                           const std::vector<std::string>& toml,
                                           const std::vector<std::string>& text) {
  switch (d) {
    case dialect::json: return json;
    case dialect::xml: return xml;
    case dialect::toml: return toml;
    case dialect::text: break;
  }
  return text;
}

/// Values a mutation puts where another value was: other types, limits,
/// almost-right strings.
const std::vector<std::string>& values(dialect d) {
  static const std::vector<std::string> json{
    "null", "true", "false", "0", "-1", "1", "2147483648", "-2147483649",
    "9223372036854775807", "-9223372036854775808", "9223372036854775808",
    "18446744073709551616", "999999999999999999999999999999", "1e308", "1e309",
    "-0", "0.5", "1e-400", "\"\"", "\"x\"", "\"queued\"", "\"in_progress\"",
    "\"Organization\"", "\"User\"", "\"i-0123456789abcdef0\"", "\"aws.ec2\"",
    "\"2026-11-22T13:00:00Z\"", "\"1970-01-01T00:00:00.5Z\"",
    "\"2026-11-22T13:00:00.123456789+14:00\"", "\"not a time\"", "\"\\u0000\"",
    "\"\\ud800\"", "\"\\ud83d\\ude00\"", "\"\xc3\xa9\"", "\"\\\"\"", "[]", "{}",
    "[null]", "[\"x\"]", "[1,2]", "{\"a\":{}}", "{\"id\":1}", "[{\"name\":\"x\"}]",
    "[{\"Id\":\"0\"}]"};
  static const std::vector<std::string> xml{
    "", "x", "running", "pending", "terminated", "stopped", "spot", "on-demand",
    "scheduled", "bogus", "i-0aaaaaaaaaaaaaaa1", "2026-11-22T13:00:00Z",
    "2026-11-22T13:00:00.999999999999Z", "soon", "&amp;", "&lt;item&gt;", "&#0;",
    "&#x1F600;", "&bogus;", "<item/>", "<item></item>", "<item><item/></item>",
    "<![CDATA[x]]>", "9223372036854775808", "-1", "\xff"};
  static const std::vector<std::string> toml{
    "0", "-1", "9223372036854775807", "9223372036854775808", "-9223372036854775808",
    "1e400", "nan", "inf", "-inf", "0.5", "true", "\"\"", "\"x\"", "\"20s\"", "\"0s\"",
    "\"1h30m\"", "\"2562047h\"", "\"2562048h\"", "\"99999999999999999999h\"",
    "\"250ms\"", "\"-5s\"", "[]", "[\"x\"]", "[1, \"a\"]", "{}", "{ a = 1 }",
    "1979-05-27T07:32:00Z", "07:32:00", "'''x'''", "\"\"\"x\"\"\"", "\"\\u0000\"",
    "\"https://user:pass@host/\"", "\"http://[::1]:99999/\"", "\"* * * * *\"",
    "\"*/0 * * * *\"", "\"60 24 32 13 8\"", "\"Europe/Nowhere\"", "\"embedded\"",
    "\"remote\"", "\"spot\"", "\"org\"", "\"lt-0123\""};
  static const std::vector<std::string> text{
    "", " ", "\t", "\r\n", "\n", "[default]", "[profile x]", "=", "#", ";", ":",
    "/", "?", "@", "%", "%2", "%zz", "%00", "%FF", "+", "&", "[::1]", ":0", ":65535",
    ":65536", ":99999", "<https://x/?page=2>; rel=\"next\"", "rel=\"next", ",",
    "Sun, 22 Nov 2026 13:31:09 GMT", "2026-11-22T13:31:09Z", "+99:99", "-00:00",
    ".999999999999999", "9223372036854775807", "-1", "http://", "https://",
    "payload=", "aws_access_key_id = x", "\xff"};
  return of_dialect(d, json, xml, toml, text);
}

/// Syntax fragments a mutation inserts anywhere.
const std::vector<std::string>& tokens(dialect d) {
  static const std::vector<std::string> json{
    "{", "}", "[", "]", ":", ",", "\"", "\\", "\\u", "\\ud800", "\"\":", "{\"a\":",
    "null", "-", "1e", ".", " ", "\n", "/*", "//", "\xef\xbb\xbf"};
  static const std::vector<std::string> xml{
    "<", ">", "</", "/>", "<item>", "</item>", "<![CDATA[", "]]>", "&", "&amp;",
    "<?xml version=\"1.0\"?>", "<!DOCTYPE a [<!ENTITY e \"x\">]>", "&e;", "<!--",
    "-->", " xmlns=\"x\"", "<Errors><Error><Code>X</Code><Message>", "\"", "'"};
  static const std::vector<std::string> toml{
    "=", "[", "]", "[[", "]]", "{", "}", "\"", "'", "\"\"\"", "'''", "\\", "#",
    "\n", ".", ",", "\n[aws]\n", "\n[[pools]]\n", "\n[[queues]]\n", "x = 1\n",
    "\n[server]\n", "\n[[pools.idle_schedule]]\n"};
  static const std::vector<std::string> text{
    "\n", "\r", " ", "=", "[", "]", "&", "%", "+", "@", ":", "/", "?", "#", "<",
    ">", ";", ",", "\""};
  return of_dialect(d, json, xml, toml, text);
}

// JSON structure, found without a parser (inputs are often broken).

size_t json_string_end(const std::string& s, size_t quote) {
  for (size_t i = quote + 1; i < s.size(); ++i) {
    if (s[i] == '\\')
      ++i;
    else if (s[i] == '"')
      return i + 1;
  }
  return s.size();
}

size_t json_value_end(const std::string& s, size_t i) {
  if (i >= s.size())
    return s.size();
  if (s[i] == '"')
    return json_string_end(s, i);
  if (s[i] == '{' || s[i] == '[') {
    int depth = 0;
    for (; i < s.size(); ++i) {
      if (s[i] == '"') {
        i = json_string_end(s, i) - 1;
      } else if (s[i] == '{' || s[i] == '[') {
        ++depth;
      } else if ((s[i] == '}' || s[i] == ']') && --depth == 0) {
        return i + 1;
      }
    }
    return s.size();
  }
  auto end = s.find_first_of(",}] \t\r\n", i);
  return end == std::string::npos ? s.size() : end;
}

/// One `"key": value` of a JSON text: where its key and value start, and
/// where the value ends.
struct json_member {
  size_t key;
  size_t value;
  size_t end;
};

std::vector<json_member> json_members(const std::string& s) {
  std::vector<json_member> out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '"')
      continue;
    auto close = json_string_end(s, i);
    auto colon = s.find_first_not_of(" \t\r\n", close);
    if (colon != std::string::npos && s[colon] == ':') {
      auto value = std::min(s.find_first_not_of(" \t\r\n", colon + 1), s.size());
      out.push_back({i, value, json_value_end(s, value)});
    }
    i = close - 1;
  }
  return out;
}

/// Where the lines of `s` start.
std::vector<size_t> line_starts(const std::string& s) {
  std::vector<size_t> out{0};
  for (size_t i = 0; i + 1 < s.size(); ++i)
    if (s[i] == '\n')
      out.push_back(i + 1);
  return out;
}

std::string_view line_at(const std::string& s, size_t start) {
  auto end = s.find('\n', start);
  return std::string_view{s}.substr(start, end == std::string::npos ? end : end - start + 1);
}

/// Replaces one value: a JSON member's value, an XML element's text, what
/// follows `=` on a TOML, INI or form line.
void swap_value(std::string& s, rng_t& rng, dialect d) {
  const auto& replacement = pick(rng, values(d));
  if (d == dialect::json) {
    auto members = json_members(s);
    if (members.empty())
      return;
    auto m = pick(rng, members);
    s.replace(m.value, m.end - m.value, replacement);
  } else if (d == dialect::xml) {
    auto open = s.find('>', below(rng, s.size()));
    auto close = open == std::string::npos ? open : s.find('<', open);
    if (close != std::string::npos)
      s.replace(open + 1, close - open - 1, replacement);
  } else {
    auto separators = d == dialect::text ? "=:&" : "=";
    auto at = s.find_first_of(separators, below(rng, s.size()));
    if (at == std::string::npos)
      return;
    auto end = std::min(s.find_first_of("\n&", at + 1), s.size());
    s.replace(at + 1, end - at - 1, (d == dialect::toml ? " " : "") + replacement);
  }
}

/// Duplicates one member (JSON: the same key again, with another value), one
/// element (XML) or one line.
void duplicate_member(std::string& s, rng_t& rng, dialect d) {
  if (d == dialect::json) {
    auto members = json_members(s);
    if (members.empty())
      return;
    auto m = pick(rng, members);
    auto key = s.substr(m.key, m.value - m.key);
    s.insert(m.end, "," + key + pick(rng, values(d)));
  } else if (d == dialect::xml) {
    auto open = s.find('<', below(rng, s.size()));
    if (open == std::string::npos || open + 1 >= s.size() || !std::isalpha(static_cast<unsigned char>(s[open + 1])))
      return;
    auto name_end = s.find_first_of(" />", open + 1);
    if (name_end == std::string::npos)
      return;
    auto closing = "</" + s.substr(open + 1, name_end - open - 1) + ">";
    auto close = s.find(closing, open);
    if (close != std::string::npos) {
      auto element = s.substr(open, close + closing.size() - open);
      s.insert(close + closing.size(), element);
    }
  } else {
    auto starts = line_starts(s);
    auto line = std::string{line_at(s, pick(rng, starts))};
    s.insert(pick(rng, starts), line.empty() || line.back() == '\n' ? line : line + "\n");
  }
}

/// One random change to `s`; `samples` lend material for splices.
void mutate_once(std::string& s, rng_t& rng, dialect d,
                 const std::vector<std::string>& samples) {
  static const std::string interesting("\0\x7f\x80\xff\"\\{}[]<>&%=\n :,", 19);
  auto at = [&] { return below(rng, s.size() + 1); };
  switch (below(rng, 13)) {
    case 0: // flip a bit
      if (!s.empty())
        s[below(rng, s.size())] ^= static_cast<char>(1u << below(rng, 8));
      break;
    case 1: // an interesting byte
      if (!s.empty())
        s[below(rng, s.size())] = interesting[below(rng, interesting.size())];
      break;
    case 2: { // random bytes
      auto n = 1 + below(rng, 8);
      std::string bytes;
      for (size_t i = 0; i < n; ++i)
        bytes += static_cast<char>(below(rng, 256));
      s.insert(at(), bytes);
      break;
    }
    case 3: { // delete a range
      auto from = at();
      s.erase(from, 1 + below(rng, chance(rng, 80) ? 16 : s.size() / 2 + 1));
      break;
    }
    case 4: { // duplicate a range, or repeat it many times
      auto from = at();
      auto piece = s.substr(from, 1 + below(rng, 64));
      s.insert(at(), repeat(piece, chance(rng, 80) ? 1 : 2 + below(rng, 63)));
      break;
    }
    case 5: { // splice with a sample
      const auto& other = pick(rng, samples);
      s = s.substr(0, at()) + other.substr(below(rng, other.size() + 1));
      break;
    }
    case 6: // truncate
      s.resize(at());
      break;
    case 7: // a syntax fragment
      s.insert(at(), pick(rng, tokens(d)));
      break;
    case 8: // invalid UTF-8 or a NUL
      s.insert(at(), pick(rng, invalid_bytes()));
      break;
    case 9:
    case 10: // another value, of another type or at a limit
      swap_value(s, rng, d);
      break;
    case 11: // a duplicated key, element or line
      duplicate_member(s, rng, d);
      break;
    default: // a value where a syntax fragment was expected, or vice versa
      s.insert(at(), pick(rng, values(d)));
      break;
  }
  if (s.size() > 64 * 1024) // mutations stay small; generator 4 makes big inputs
    s.resize(64 * 1024);
}

struct fuzz_input {
  std::string text;
  const char* kind; // which generator
};

/// Generators 1 and 2: random bytes, mutated samples, and soups of the
/// dialect's fragments and values.
fuzz_input next_input(rng_t& rng, const std::vector<std::string>& samples, dialect d) {
  auto roll = below(rng, 100);
  if (roll < 15 || samples.empty()) {
    auto n = below(rng, chance(rng, 50) ? 64 : 4097);
    std::string bytes(n, '\0');
    for (auto& c : bytes)
      c = static_cast<char>(below(rng, 256));
    return {std::move(bytes), "random bytes"};
  }
  if (roll < 25) {
    std::string soup;
    for (size_t i = 0, n = 1 + below(rng, 40); i < n; ++i)
      soup += chance(rng, 50) ? pick(rng, tokens(d)) : pick(rng, values(d));
    return {std::move(soup), "fragment soup"};
  }
  auto s = pick(rng, samples);
  for (size_t i = 0, n = 1 + below(rng, 6); i < n; ++i)
    mutate_once(s, rng, d, samples);
  return {std::move(s), "mutated sample"};
}

/// Generator 3: 200,000-deep nesting, alone and inside a valid field.
std::vector<fuzz_input> deep_inputs(const std::vector<std::string>& samples, dialect d) {
  std::vector<fuzz_input> out;
  const auto& sample = samples.empty() ? std::string{} : samples.front();
  switch (d) {
    case dialect::json: {
      auto closed = repeat("[", deep) + repeat("]", deep);
      out.push_back({repeat("[", deep), "deep: unclosed arrays"});
      out.push_back({repeat("{\"a\":", deep), "deep: unclosed objects"});
      out.push_back({closed, "deep: closed arrays"});
      out.push_back({repeat("{\"a\":", deep) + "1" + repeat("}", deep), "deep: closed objects"});
      auto members = json_members(sample);
      for (size_t i = 0; i < members.size(); i += std::max<size_t>(1, members.size() / 4)) {
        auto s = sample;
        s.replace(members[i].value, members[i].end - members[i].value, closed);
        out.push_back({std::move(s), "deep: closed arrays in a field"});
      }
      if (!members.empty())
        out.push_back({sample.substr(0, members.back().value) + repeat("{\"a\":[", deep),
                       "deep: unclosed in a field"});
      break;
    }
    case dialect::xml: {
      auto closed = repeat("<a>", deep) + repeat("</a>", deep);
      out.push_back({repeat("<a>", deep), "deep: unclosed elements"});
      out.push_back({closed, "deep: closed elements"});
      auto text = sample.find("><");
      if (text != std::string::npos) {
        out.push_back({sample.substr(0, text + 1) + closed + sample.substr(text + 1),
                       "deep: closed elements in an element"});
        out.push_back({sample.substr(0, text + 1) + repeat("<item>", deep),
                       "deep: unclosed elements in an element"});
      }
      break;
    }
    case dialect::toml:
      out.push_back({"a = " + repeat("[", deep), "deep: unclosed arrays"});
      out.push_back({"a = " + repeat("[", deep) + repeat("]", deep), "deep: closed arrays"});
      out.push_back({"a = " + repeat("{b = ", deep) + "1" + repeat("}", deep),
                     "deep: inline tables"});
      out.push_back({"a" + repeat(".a", deep) + " = 1\n", "deep: dotted keys"});
      out.push_back({"[a" + repeat(".a", deep) + "]\n", "deep: dotted table"});
      out.push_back({sample + "\nlabels = " + repeat("[", deep) + repeat("]", deep) + "\n",
                     "deep: closed arrays in a table"});
      break;
    case dialect::text:
      out.push_back({repeat("[", deep), "deep: brackets"});
      out.push_back({"payload=" + repeat("%5B", deep), "deep: encoded brackets"});
      out.push_back({repeat("<a>", deep), "deep: angle brackets"});
      break;
  }
  return out;
}

/// Generator 4: long strings and many keys, up to 1 MiB (a few at full size:
/// under the sanitizers every MiB costs).
std::vector<fuzz_input> big_inputs(const std::vector<std::string>& samples, dialect d) {
  std::vector<fuzz_input> out;
  const auto& sample = samples.empty() ? std::string{} : samples.front();
  const auto filler = repeat("x", big - 4096);
  switch (d) {
    case dialect::json: {
      out.push_back({"{\"k\":\"" + filler + "\"}", "big: long string"});
      auto members = json_members(sample);
      auto string_member = std::find_if(members.begin(), members.end(),
                                        [&](auto& m) { return sample[m.value] == '"'; });
      if (string_member != members.end()) {
        auto s = sample;
        s.replace(string_member->value, string_member->end - string_member->value,
                  "\"" + filler + "\"");
        out.push_back({std::move(s), "big: long string in a field"});
      }
      std::string keys = "{";
      for (size_t i = 0; keys.size() < big - 64; ++i)
        keys += "\"k" + std::to_string(i) + "\":" + std::to_string(i) + ",";
      keys.back() = '}';
      out.push_back({std::move(keys), "big: many keys"});
      std::string same = "{";
      for (size_t i = 0; same.size() < big / 4; ++i)
        same += "\"id\":" + std::to_string(i) + ",";
      same.back() = '}';
      out.push_back({std::move(same), "big: one key many times"});
      out.push_back({"[" + repeat("9", 64 * 1024) + "]", "big: long number"});
      out.push_back({sample + std::string(big + 1 - std::min(sample.size(), big), ' '),
                     "big: sample padded to 1 MiB + 1"});
      break;
    }
    case dialect::xml: {
      out.push_back({"<a>" + filler + "</a>", "big: long text"});
      out.push_back({"<a x=\"" + filler.substr(0, big / 4) + "\"/>", "big: long attribute"});
      out.push_back({"<a>" + repeat("&amp;", big / 20) + "</a>", "big: many entities"});
      std::string items = "<DescribeInstancesResponse><reservationSet><item><instancesSet>";
      while (items.size() < big - 4096)
        items += "<item><instanceId>i-0aaaaaaaaaaaaaaa1</instanceId><instanceState><name>"
                 "running</name></instanceState><launchTime>2026-11-22T13:00:00Z</launchTime>"
                 "<tagSet><item><key>k</key><value>v</value></item></tagSet></item>";
      items += "</instancesSet></item></reservationSet></DescribeInstancesResponse>";
      out.push_back({std::move(items), "big: many instances"});
      break;
    }
    case dialect::toml: {
      out.push_back({"name = \"" + filler + "\"\n", "big: long string"});
      out.push_back({sample + "\n[[pools]]\nname = \"" + filler.substr(0, big / 4) + "\"\n",
                     "big: long string in a table"});
      std::string keys;
      for (size_t i = 0; keys.size() < big - 64; ++i)
        keys += "k" + std::to_string(i) + " = " + std::to_string(i) + "\n";
      out.push_back({std::move(keys), "big: many keys"});
      break;
    }
    case dialect::text:
      out.push_back({filler, "big: long line"});
      out.push_back({"payload=" + filler, "big: long field"});
      out.push_back({repeat("a=b&\n", big / 16), "big: many fields and lines"});
      out.push_back({repeat(" ", big / 4), "big: whitespace"});
      break;
  }
  return out;
}

// -- the driver -----------------------------------------------------------------

/// What a check gets besides the input: randomness for the rest of the call
/// (status, headers, ...), derived from the input's seed and index.
struct fuzz_context {
  rng_t rng;
};

/// Who is fuzzed, with what.
struct corpus {
  const char* parser;
  std::vector<std::string> samples;
  dialect kind;
};

std::string describe_input(const corpus& c, uint64_t seed, size_t index,
                           const fuzz_input& in) {
  std::ostringstream out;
  out << c.parser << " input #" << index << " of seed " << seed << " (" << in.kind
      << ", " << in.text.size() << " bytes): \"";
  for (size_t i = 0; i < std::min<size_t>(in.text.size(), 300); ++i) {
    auto ch = static_cast<unsigned char>(in.text[i]);
    if (ch == '\\' || ch == '"')
      out << '\\' << ch;
    else if (ch >= 0x20 && ch < 0x7f)
      out << ch;
    else
      out << "\\x" << std::hex << std::setw(2) << std::setfill('0') << int{ch}
          << std::dec;
  }
  out << (in.text.size() > 300 ? "\"..." : "\"");
  return out.str();
}

/// Runs `check(text, context)` on the corpus's deep and big inputs, then on
/// inputs_per_parser() generated ones spread over the seeds. Stops at the
/// first input that fails a check: the failure names it.
template <class Check>
void fuzz(const corpus& c, Check&& check) {
  auto started = std::chrono::steady_clock::now();
  size_t checked = 0;
  auto run = [&](const fuzz_input& in, uint64_t seed, size_t index) {
    fuzz_context ctx{rng_t{seed * 1'000'003 + index}};
    ::testing::ScopedTrace trace{__FILE__, __LINE__, describe_input(c, seed, index, in)};
    now_parsing = {c.parser, seed, index, in.kind, &in.text};
    check(in.text, ctx);
    now_parsing.text = nullptr;
    ++checked;
    return !::testing::Test::HasFailure();
  };
  auto fixed = deep_inputs(c.samples, c.kind);
  for (auto& in : big_inputs(c.samples, c.kind))
    fixed.push_back(std::move(in));
  for (size_t i = 0; i < fixed.size(); ++i)
    if (!run(fixed[i], 0, i))
      return;
  auto all_seeds = seeds();
  auto per_seed = (inputs_per_parser() + all_seeds.size() - 1) / all_seeds.size();
  for (auto seed : all_seeds) {
    rng_t rng{seed};
    for (size_t i = 0; i < per_seed; ++i)
      if (!run(next_input(rng, c.samples, c.kind), seed, i))
        return;
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
    std::chrono::steady_clock::now() - started);
  std::printf("[   fuzz   ] %s: %zu inputs checked, %lld ms\n", c.parser, checked,
              static_cast<long long>(ms.count()));
}

// -- assertions shared by the checks ---------------------------------------------

/// An error value must say what is wrong: a non-empty message.
void expect_explained(const caf::error& err) {
  ASSERT_TRUE(err) << "an error value without an error";
  const auto& ctx = err.context();
  EXPECT_TRUE(ctx.match_elements<std::string>() && !ctx.get_as<std::string>(0).empty())
    << "error without a message: " << describe(err);
}

void expect_explained(const caf::error& err, errc code) {
  expect_explained(err);
  EXPECT_TRUE(err == code) << describe(err);
}

/// `x` is an error of `code` that says what is wrong.
template <class T>
void expect_refused(const caf::expected<T>& x, errc code) {
  ASSERT_FALSE(x);
  expect_explained(x.error(), code);
}

/// The clocks GitHub and AWS answers are read with (as github_rest_test's).
clock_bridge test_clocks() {
  return clock_bridge{caf::timespan{1795352400s}, caf::timespan{1000s}}; // 2026-11-22T13:00:00Z
}

caf::timespan whole_seconds(caf::timespan t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t);
}

/// The fields both queue body formats carry.
void expect_same_job(const job_event& a, const job_event& b) {
  EXPECT_EQ(a.action, b.action);
  EXPECT_EQ(a.key.job_id, b.key.job_id);
  EXPECT_EQ(a.repository, b.repository);
  EXPECT_EQ(a.installation_id, b.installation_id);
  EXPECT_EQ(a.labels, b.labels);
}

/// What to_webhook_payload carries on top (times to the second; a time at or
/// before the epoch is left out, so it reads back as 0).
void expect_same_webhook_job(const job_event& a, const job_event& b) {
  expect_same_job(a, b);
  EXPECT_EQ(a.key.run_attempt, b.key.run_attempt);
  EXPECT_EQ(a.run_id, b.run_id);
  EXPECT_EQ(a.runner_name, b.runner_name);
  for (auto [x, y] : {std::pair{a.created_at, b.created_at}, std::pair{a.started_at, b.started_at}})
    EXPECT_EQ(x.count() > 0 ? whole_seconds(x) : caf::timespan{0}, y);
}

// -- the parsers -------------------------------------------------------------------

// The webhook: signature first, then the JSON or the form's payload field.
TEST(parser_fuzz, webhook_delivery) {
  const std::vector<secret_string> secrets{secret_string{"current-secret"},
                                           secret_string{"previous-secret"}};
  const webhook_settings any_repository{secrets, {}, 1024 * 1024};
  const webhook_settings narrow{secrets, {"octo-org/*", "acme/widgets"}, 1024 * 1024};
  const std::vector<int> statuses{200, 202, 400, 401, 403, 405, 413};
  auto check = [&](const std::string& json, fuzz_context& ctx) {
    auto& rng = ctx.rng;
    // Most deliveries are as GitHub sends them, signed with a secret in use,
    // so that the body reaches the parser; the rest bend the request.
    auto shape = below(rng, 20);
    webhook_request req;
    req.method = shape == 0 ? pick(rng, std::vector<std::string>{"GET", "post", "", "PUT"})
                            : "POST";
    bool form = shape >= 10;
    if (form) {
      auto content = pick(rng, std::vector<std::string>{
                                 "application/x-www-form-urlencoded",
                                 "application/x-www-form-urlencoded; charset=utf-8",
                                 "Application/X-WWW-Form-Urlencoded"});
      req.headers.push_back({"Content-Type", content});
      switch (below(rng, 4)) {
        case 0: req.body = "payload=" + uri_encode(json); break;
        case 1: req.body = form_encode({{"a", "1"}, {"payload", json}, {"b", "&="}}); break;
        case 2: req.body = "payload=" + json; break; // unencoded: '+' and '%' change it
        default: req.body = json; break;              // no payload field
      }
    } else {
      req.headers.push_back({"content-type", "application/json"});
      req.body = json;
    }
    auto event = shape == 1 ? pick(rng, std::vector<std::string>{"ping", "push", ""})
                            : std::string{"workflow_job"};
    if (shape != 2)
      req.headers.push_back({"X-GitHub-Event", event});
    bool signed_right = shape != 3 && shape != 4;
    auto signature = "sha256=" + hex(hmac_sha256(pick(rng, secrets).value, req.body));
    if (shape == 3) // a flipped hex digit
      signature[7 + below(rng, 64)] ^= 1;
    if (chance(rng, 10)) // the header compares case-insensitively
      std::transform(signature.begin(), signature.end(), signature.begin(),
                     [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    if (shape != 4)
      req.headers.push_back({"X-Hub-Signature-256", signature});
    if (shape == 5) // two signatures
      req.headers.push_back({"x-hub-signature-256", signature});
    const auto& settings = chance(rng, 50) ? any_repository : narrow;

    auto d = decide_webhook(settings, req);
    EXPECT_NE(std::find(statuses.begin(), statuses.end(), d.status), statuses.end())
      << d.status;
    EXPECT_FALSE(d.outcome.empty());
    EXPECT_FALSE(d.response.empty());
    EXPECT_EQ(d.message.has_value(), d.outcome == "accepted") << d.outcome;
    if (req.method != "POST") {
      EXPECT_EQ(d.status, 405);
      return;
    }
    if (req.body.size() > 1024 * 1024) {
      EXPECT_EQ(d.status, 413);
      return;
    }
    if (!signed_right || shape == 5) {
      EXPECT_EQ(d.status, 401) << d.outcome;
      return;
    }
    EXPECT_NE(d.status, 401) << "a good signature was refused: " << d.outcome;
    if (d.outcome != "accepted")
      return;
    EXPECT_EQ(d.status, 202);
    ASSERT_TRUE(d.event);
    // What ingress puts on the queue, the queue's consumer reads as the same job.
    auto delivered = form ? form_field(req.body, "payload") : std::optional<std::string>{json};
    ASSERT_TRUE(delivered);
    auto parsed = parse_job_event(*delivered);
    ASSERT_TRUE(parsed);
    expect_same_job(*parsed, *d.event);
    if (d.message->size() <= 1024 * 1024) {
      auto queued = parse_job_event(*d.message);
      ASSERT_TRUE(queued) << describe(queued.error());
      expect_same_job(*queued, *d.event);
    }
  };
  fuzz({"webhook delivery", workflow_job_samples(), dialect::json}, check);
}

TEST(parser_fuzz, workflow_job_event) {
  fuzz({"workflow_job event", queue_body_samples(), dialect::json},
       [](const std::string& body, fuzz_context&) {
         auto ev = parse_job_event(body);
         if (!ev) {
           expect_explained(ev.error(), errc::malformed_event);
           return;
         }
         // Round trips through both formats ghscale writes (the webhook
         // payload repeats the owner; past 1 MiB it is no body of ours).
         auto payload = to_webhook_payload(*ev);
         if (payload.size() <= 1024 * 1024) {
           auto again = parse_job_event(payload);
           ASSERT_TRUE(again) << describe(again.error());
           expect_same_webhook_job(*ev, *again);
         }
         if (ev->action == job_action::queued) {
           auto lambda = parse_job_event(to_lambda_message(*ev));
           ASSERT_TRUE(lambda) << describe(lambda.error());
           expect_same_job(*ev, *lambda);
           EXPECT_EQ(lambda->retry_counter, ev->retry_counter);
         }
       });
}

TEST(parser_fuzz, spot_interruption_event) {
  fuzz({"spot interruption", spot_event_samples(), dialect::json},
       [](const std::string& body, fuzz_context&) {
         auto id = parse_spot_interruption(body);
         if (!id) {
           expect_explained(id.error(), errc::malformed_event);
           return;
         }
         if (!*id)
           return; // not such an event
         EXPECT_EQ(id->value().compare(0, 2, "i-"), 0) << **id;
         auto again = parse_spot_interruption(to_spot_interruption_event(**id, 1795352400s));
         ASSERT_TRUE(again && *again);
         EXPECT_EQ(**again, **id);
       });
}

// SQS and SSM answers (JSON 1.0 / 1.1) and the error answers of either protocol.
TEST(parser_fuzz, aws_json_answers) {
  const std::vector<std::string> names{"r0", "r1", "r2", "r3"};
  const std::vector<int32_t> error_statuses{400, 403, 404, 413, 500, 503, 0, 199, 302, 600, -1};
  const std::vector<std::string> query_errors{"AWS.SimpleQueueService.NonExistentQueue;Sender",
                                              ";Sender", "", "Throttling", "\xff;"};
  fuzz({"SQS/SSM JSON answers", aws_json_samples(), dialect::json},
       [&](const std::string& body, fuzz_context& ctx) {
         auto clocks = test_clocks();
         if (auto batch = parse_sqs_receive(body, clocks, "SQS ReceiveMessage")) {
           for (auto& m : batch->messages)
             EXPECT_FALSE(m.receipt.empty());
         } else {
           expect_explained(batch.error(), errc::backend_failure);
         }
         // Every entry of the call is reported exactly once.
         auto first = below(ctx.rng, 2);
         auto count = 1 + below(ctx.rng, 3);
         if (auto result = parse_sqs_batch(body, names, first, count, "SQS DeleteMessageBatch")) {
           std::multiset<std::string> reported{result->succeeded.begin(), result->succeeded.end()};
           for (auto& f : result->failed)
             reported.insert(f.id);
           EXPECT_EQ(reported, (std::multiset<std::string>{names.begin() + first,
                                                           names.begin() + first + count}));
         } else {
           expect_explained(result.error(), errc::backend_failure);
         }
         if (auto depth = parse_sqs_depth(body, "SQS GetQueueAttributes"); !depth)
           expect_explained(depth.error(), errc::backend_failure);
         if (auto value = parse_ssm_parameter_value(body, "SSM GetParameter"); !value)
           expect_explained(value.error(), errc::backend_failure);
         auto status = pick(ctx.rng, error_statuses);
         std::vector<http_header> headers;
         if (chance(ctx.rng, 30))
           headers.push_back({"x-amzn-query-error", pick(ctx.rng, query_errors)});
         auto err = parse_json_error(status, headers, body);
         EXPECT_EQ(err.status, status);
         EXPECT_FALSE(err.code.empty());
         EXPECT_LE(err.message.size(), 300u); // aws_protocol.cpp: max_message_chars
         auto any = parse_aws_error(http_response{status, headers, secret_string{body}});
         ASSERT_TRUE(any);
         EXPECT_FALSE(any->code.empty());
         EXPECT_LE(any->message.size(), 300u);
         expect_explained(to_error(*any, "SQS ReceiveMessage"));
         EXPECT_FALSE(parse_aws_error(http_response{200, headers, secret_string{body}}));
       });
}

// EC2's query-protocol answers (XML) and its error answers.
TEST(parser_fuzz, ec2_xml_answers) {
  const std::vector<std::string> ids{"i-0aaaaaaaaaaaaaaa1", "i-0bbbbbbbbbbbbbbb2",
                                     "i-0ccccccccccccccc1"};
  fleet_request req;
  req.capacity = capacity_type::spot;
  fuzz({"EC2 XML answers", ec2_xml_samples(), dialect::xml},
       [&](const std::string& body, fuzz_context& ctx) {
         if (auto fleet = parse_create_fleet(body, req, "EC2 CreateFleet"); !fleet)
           expect_explained(fleet.error(), errc::backend_failure);
         if (auto page = parse_describe_instances(body, test_clocks(), "EC2 DescribeInstances");
             !page)
           expect_explained(page.error(), errc::backend_failure);
         if (auto result = parse_terminate_instances(body, ids, "EC2 TerminateInstances")) {
           EXPECT_EQ(result->succeeded.size() + result->failed.size(), ids.size());
         } else {
           expect_explained(result.error(), errc::backend_failure);
         }
         for (auto& id : instance_ids_named_in(body, ids)) {
           EXPECT_NE(std::find(ids.begin(), ids.end(), id), ids.end());
           EXPECT_NE(body.find(id), std::string::npos);
         }
         auto status = static_cast<int32_t>(400 + below(ctx.rng, 200));
         auto err = parse_xml_error(status, body);
         EXPECT_FALSE(err.code.empty());
         EXPECT_LE(err.message.size(), 300u);
         auto any = parse_aws_error(http_response{status, {}, secret_string{body}});
         ASSERT_TRUE(any);
         EXPECT_FALSE(any->code.empty());
       });
}

// GitHub's answers to every operation: bodies, status, rate-limit headers,
// retry-after and Link.
TEST(parser_fuzz, github_rest_answers) {
  const std::vector<github_op> ops{
    github_op::create_installation_token, github_op::generate_jit_config,
    github_op::create_registration_token, github_op::get_job, github_op::list_runners,
    github_op::delete_runner, github_op::get_runner_group, github_op::get_installation};
  const std::vector<int32_t> statuses{200, 200, 201, 201, 204, 100, 301, 304, 400, 401,
                                      403, 404, 422, 429, 500, 503, 0, -1, 999};
  const std::vector<std::string> header_values{
    "0", "60", " 4987 ", "-1", "1795352520", "5000", "1e3", "", "soon", "0x10",
    "9223372036854775807", "-9223372036854775808", "99999999999",
    "Sun, 22 Nov 2026 13:01:30 GMT", "Sun, 22 Nov 9999 13:01:30 GMT",
    "Sun, 22 Nov 99 13:01:30 GMT", "Mon, 32 Foo 2026 25:61:61 GMT",
    R"(<https://api.github.com/x?page=2>; rel="next", <https://api.github.com/x?page=5>; rel="last")",
    "<https://x/r?a=1,2>;rel=next", "<", ">", ">;rel=\"", "<a>; rel=\"prev next\"",
    ";;;,,,rel=next", "<>; rel"};
  const std::vector<std::string> header_names{"x-ratelimit-limit", "x-ratelimit-remaining",
                                              "x-ratelimit-reset", "retry-after", "link"};
  auto samples = github_samples();
  fuzz({"GitHub REST answers", samples, dialect::json},
       [&](const std::string& body, fuzz_context& ctx) {
         auto& rng = ctx.rng;
         http_response r;
         r.status = pick(rng, statuses);
         r.body.value = body;
         for (auto& name : header_names) {
           if (!chance(rng, 40))
             continue;
           auto value = pick(rng, header_values);
           for (size_t i = 0, n = below(rng, 3); i < n; ++i)
             mutate_once(value, rng, dialect::text, header_values);
           r.headers.push_back({chance(rng, 20) ? ascii_lower(name) : name, value});
         }
         for (auto op : ops) {
           auto req = ghscale::testing::sample_github_request(op, ghscale::testing::repo_target);
           auto res = parse_github_response(req, r, test_clocks());
           if (!res) {
             EXPECT_TRUE(r.status >= 200 && r.status < 300) << r.status;
             expect_explained(res.error(), errc::backend_failure);
             continue;
           }
           EXPECT_EQ(res->status, r.status);
           EXPECT_GE(res->retry_after, caf::timespan{0});
           EXPECT_LE(res->message.size(), 303u); // 300 characters and "..."
         }
       });
}

// AWS credentials: the IMDSv2 answers, the shared files and the environment.
TEST(parser_fuzz, aws_credentials) {
  const std::vector<int32_t> statuses{200, 200, 200, 200, 404, 401, 403, 500, 0};
  fuzz({"IMDS answers", imds_samples(), dialect::json},
       [&](const std::string& body, fuzz_context& ctx) {
         http_response r{pick(ctx.rng, statuses), {}, secret_string{body}};
         if (auto token = parse_imds_token(r)) {
           EXPECT_FALSE(token->value.empty());
           EXPECT_EQ(trim_space(token->value), token->value);
         } else {
           expect_explained(token.error());
         }
         if (auto role = parse_imds_role(r)) {
           EXPECT_FALSE(role->empty());
         } else {
           expect_explained(role.error());
         }
         if (auto creds = parse_imds_credentials(r, "ghscale-role")) {
           EXPECT_FALSE(creds->access_key_id.empty());
           EXPECT_FALSE(creds->secret_access_key.empty());
           EXPECT_EQ(creds->source, "imds role ghscale-role");
         } else {
           expect_explained(creds.error());
         }
       });
  auto files = ini_samples();
  fuzz({"AWS shared files and environment", files, dialect::text},
       [&](const std::string& text, fuzz_context& ctx) {
         auto profile = pick(ctx.rng, std::vector<std::string>{"default", "ci", "dev", "half", "",
                                                               "profile dev", "x"});
         const auto& other = pick(ctx.rng, files);
         for (auto creds : {credentials_from_profile(text, other, profile),
                            credentials_from_profile(other, text, profile)}) {
           if (creds) {
             EXPECT_FALSE(creds->access_key_id.empty());
             EXPECT_FALSE(creds->secret_access_key.empty());
             EXPECT_EQ(creds->source, "profile '" + profile + "'");
           } else {
             expect_explained(creds.error());
             EXPECT_TRUE(creds.error() == errc::not_found || creds.error() == errc::invalid_config)
               << describe(creds.error());
           }
         }
         // The input's lines as the four variables.
         std::vector<std::string> lines;
         std::istringstream in{text};
         for (std::string line; lines.size() < 4 && std::getline(in, line);)
           lines.push_back(line);
         lines.resize(4);
         env_lookup env = [&](const std::string& name) -> std::optional<std::string> {
           static const std::vector<std::string> order{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                                       "AWS_SESSION_TOKEN",
                                                       "AWS_CREDENTIAL_EXPIRATION"};
           auto i = std::find(order.begin(), order.end(), name) - order.begin();
           if (i == 4 || lines[i].empty())
             return std::nullopt;
           return lines[i];
         };
         if (auto creds = credentials_from_environment(env); !creds)
           expect_explained(creds.error());
       });
}

TEST(parser_fuzz, config_file) {
  fuzz({"TOML configuration", config_samples(), dialect::toml},
       [](const std::string& text, fuzz_context&) {
         auto cfg = parse_config(text, "fuzz.toml");
         if (!cfg) {
           expect_explained(cfg.error(), errc::invalid_config);
           EXPECT_NE(describe(cfg.error()).find("fuzz.toml"), std::string::npos)
             << describe(cfg.error());
           return;
         }
         // What check-config prints reads back as the same configuration.
         auto rendered = render_config(*cfg);
         auto again = parse_config(rendered, "rendered.toml");
         ASSERT_TRUE(again) << describe(again.error()) << "\n" << rendered;
         EXPECT_EQ(render_config(*again), rendered);
       });
  fuzz({"durations", duration_samples(), dialect::text},
       [](const std::string& text, fuzz_context&) {
         caf::timespan d{0};
         if (!parse_duration(text, d))
           return;
         EXPECT_GE(d.count(), 0);
         caf::timespan again{-1};
         ASSERT_TRUE(parse_duration(format_duration(d), again)) << format_duration(d);
         EXPECT_EQ(again, d);
       });
}

TEST(parser_fuzz, url_and_form_helpers) {
  fuzz({"URLs and form bodies", url_and_form_samples(), dialect::text},
       [](const std::string& text, fuzz_context& ctx) {
         if (auto url = parse_url(text)) {
           EXPECT_TRUE(url->scheme == "http" || url->scheme == "https") << url->scheme;
           EXPECT_FALSE(url->host.empty());
           EXPECT_TRUE(url->port >= 0 && url->port <= 65535) << url->port;
           ASSERT_FALSE(url->path.empty());
           EXPECT_EQ(url->path.front(), '/');
           EXPECT_FALSE(url->authority().empty());
         } else {
           expect_explained(url.error(), errc::invalid_config);
         }
         // Credentials in a URL never reach the error.
         auto with_password = parse_url("https://user:SeCrEtPaSs@" + text);
         ASSERT_FALSE(with_password);
         EXPECT_EQ(describe(with_password.error()).find("SeCrEtPaSs"), std::string::npos)
           << describe(with_password.error());
         auto encoded = uri_encode(text, chance(ctx.rng, 50));
         EXPECT_EQ(encoded.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                             "0123456789-_.~%/"),
                   std::string::npos);
         EXPECT_EQ(uri_decode(encoded), text);
         EXPECT_LE(uri_decode(text).size(), text.size());
         for (auto name : {"payload", "a", ""}) {
           if (auto value = form_field(text, name)) {
             EXPECT_LE(value->size(), text.size());
           }
         }
         auto field = form_field(form_encode({{"x", "1"}, {"payload", text}}), "payload");
         ASSERT_TRUE(field);
         EXPECT_EQ(*field, text);
       });
}

TEST(parser_fuzz, wall_clock_times) {
  fuzz({"RFC 3339 and HTTP dates", time_samples(), dialect::text},
       [](const std::string& text, fuzz_context&) {
         if (auto t = parse_rfc3339(text)) {
           auto again = parse_rfc3339(rfc3339(*t));
           ASSERT_TRUE(again) << rfc3339(*t);
           EXPECT_EQ(*again, whole_seconds(*t));
         } else {
           expect_explained(t.error(), errc::rejected);
         }
         if (auto t = parse_http_date(text); !t)
           expect_explained(t.error(), errc::rejected);
       });
}

TEST(parser_fuzz, scenario_trace) {
  fuzz({"simulation trace", trace_samples(), dialect::json},
       [](const std::string& text, fuzz_context&) {
         auto entries = scenario::parse_trace(text, "fuzz.jsonl");
         if (!entries) {
           expect_explained(entries.error(), errc::invalid_config);
           EXPECT_EQ(describe(entries.error()).find("fuzz.jsonl:"),
                     describe(entries.error()).find(':') + 2)
             << describe(entries.error());
           return;
         }
         caf::timespan last{0};
         for (auto& e : *entries) {
           EXPECT_GE(e.at, last) << "entries come back in time order, none negative";
           last = e.at;
           if (e.what == scenario::trace_entry::kind::job) {
             EXPECT_EQ(e.job.event.action, job_action::queued);
           }
         }
       });
}

// -- 200,000-deep nesting, one parser at a time -------------------------------------
// Every parser of outside JSON or XML must answer such a body with an error
// (or, where its contract says so, with "not for me"), never by overflowing
// the stack.

const std::string deep_arrays = repeat("[", deep);
const std::string deep_objects = repeat("{\"a\":", deep);
const std::string closed_deep_arrays = repeat("[", deep) + repeat("]", deep);
const std::string deep_elements = repeat("<a>", deep);

TEST(parser_deep_nesting, webhook_delivery) {
  const secret_string secret{"current-secret"};
  const webhook_settings settings{{secret}, {}, 1024 * 1024};
  auto deliver = [&](const std::string& body, bool form) {
    webhook_request req{"POST", {{"X-GitHub-Event", "workflow_job"}}, body};
    if (form)
      req.headers.push_back({"Content-Type", "application/x-www-form-urlencoded"});
    req.headers.push_back({"X-Hub-Signature-256", "sha256=" + hex(hmac_sha256(secret.value, body))});
    return decide_webhook(settings, req);
  };
  for (auto& json : {deep_arrays, deep_objects, closed_deep_arrays,
                     R"({"action":"queued","workflow_job":{"id":1,"labels":)" + closed_deep_arrays
                       + "}}"}) {
    for (bool form : {false, true}) {
      auto d = deliver(form ? "payload=" + json : json, form);
      EXPECT_EQ(d.status, 400) << d.outcome;
      EXPECT_EQ(d.outcome, "malformed");
    }
  }
}

TEST(parser_deep_nesting, workflow_job_event) {
  auto sample = source_file("tests/data/workflow_job_queued.json");
  auto labels = sample.find("\"labels\":");
  ASSERT_NE(labels, std::string::npos);
  auto in_labels = sample.substr(0, labels) + "\"labels\":" + closed_deep_arrays + ","
                   + sample.substr(sample.find(']', labels) + 2);
  for (auto& body : {deep_arrays, deep_objects, closed_deep_arrays, in_labels}) {
    expect_refused(parse_job_event(body), errc::malformed_event);
  }
}

TEST(parser_deep_nesting, spot_interruption_event) {
  const std::string envelope = R"({"source":"aws.ec2","detail-type":"EC2 Spot Instance Interruption Warning","detail":)";
  for (auto& body : {envelope + closed_deep_arrays + "}",
                     envelope + R"({"instance-id":)" + closed_deep_arrays
                       + R"(,"instance-action":"terminate"}})",
                     envelope + deep_objects}) {
    auto id = parse_spot_interruption(body);
    if (body.back() == '}') {
      ASSERT_FALSE(id);
      expect_explained(id.error(), errc::malformed_event);
    } else {
      ASSERT_TRUE(id); // not JSON: no such event, by contract
      EXPECT_FALSE(*id);
    }
  }
  for (auto& body : {deep_arrays, deep_objects}) {
    auto id = parse_spot_interruption(body);
    ASSERT_TRUE(id);
    EXPECT_FALSE(*id);
  }
}

TEST(parser_deep_nesting, aws_json_answers) {
  const std::vector<std::string> names{"r0"};
  for (auto& body : {deep_arrays, deep_objects, closed_deep_arrays}) {
    expect_refused(parse_sqs_receive(body, test_clocks(), "SQS ReceiveMessage"), errc::backend_failure);
    expect_refused(parse_sqs_batch(body, names, 0, 1, "SQS DeleteMessageBatch"), errc::backend_failure);
    expect_refused(parse_sqs_depth(body, "SQS GetQueueAttributes"), errc::backend_failure);
    expect_refused(parse_ssm_parameter_value(body, "SSM GetParameter"), errc::backend_failure);
    auto err = parse_aws_error(http_response{400, {}, secret_string{body}});
    ASSERT_TRUE(err);
    EXPECT_EQ(err->code, "HTTP 400");
  }
}

TEST(parser_deep_nesting, ec2_xml_answers) {
  fleet_request req;
  const std::vector<std::string> ids{"i-0aaaaaaaaaaaaaaa1"};
  expect_refused(parse_create_fleet(deep_elements, req, "EC2 CreateFleet"), errc::backend_failure);
  expect_refused(parse_describe_instances(deep_elements, test_clocks(), "EC2 DescribeInstances"), errc::backend_failure);
  expect_refused(parse_terminate_instances(deep_elements, ids, "EC2 TerminateInstances"), errc::backend_failure);
  auto err = parse_aws_error(http_response{400, {}, secret_string{deep_elements}});
  ASSERT_TRUE(err);
  EXPECT_EQ(err->code, "HTTP 400");
}

TEST(parser_deep_nesting, github_rest_answers) {
  for (auto op : {github_op::create_installation_token, github_op::generate_jit_config,
                  github_op::create_registration_token, github_op::get_job,
                  github_op::list_runners, github_op::get_runner_group,
                  github_op::get_installation}) {
    auto req = ghscale::testing::sample_github_request(op, ghscale::testing::repo_target);
    for (auto& body : {deep_arrays, deep_objects, closed_deep_arrays}) {
      auto res = parse_github_response(req, http_response{200, {}, secret_string{body}},
                                       test_clocks());
      ASSERT_FALSE(res) << to_string(op);
      expect_explained(res.error(), errc::backend_failure);
      auto failed = parse_github_response(req, http_response{404, {}, secret_string{body}},
                                          test_clocks());
      ASSERT_TRUE(failed); // any status >= 400 is a response; its message is unreadable
      EXPECT_EQ(failed->message, "");
    }
  }
}

TEST(parser_deep_nesting, aws_credentials) {
  for (auto& body : {deep_arrays, deep_objects, closed_deep_arrays}) {
    expect_refused(parse_imds_credentials(http_response{200, {}, secret_string{body}}, "role"), errc::backend_failure);
    expect_refused(credentials_from_profile(body, body, "default"), errc::not_found);
  }
}

TEST(parser_deep_nesting, config_file) {
  for (auto& text : {"a = " + deep_arrays, "a = " + closed_deep_arrays,
                     "a = " + repeat("{b = ", deep) + "1" + repeat("}", deep)}) {
    expect_refused(parse_config(text, "deep.toml"), errc::invalid_config);
  }
}

TEST(parser_deep_nesting, url_and_form_helpers) {
  expect_refused(parse_url("https://" + repeat("[", deep)), errc::invalid_config);
  auto payload = form_field("payload=" + repeat("%5B", deep), "payload");
  ASSERT_TRUE(payload);
  EXPECT_EQ(*payload, deep_arrays);
}

// -- what this test found, fixed ---------------------------------------------------------

// Years outside 1678..2262 overflowed int64 nanoseconds (UBSan: "signed
// integer overflow" in wall_clock.cpp); times from outside are now held to
// 1900..2200.
TEST(parser_fuzz, far_years_are_refused) {
  EXPECT_FALSE(parse_rfc3339("2263-01-01T00:00:00Z"));
  EXPECT_FALSE(parse_rfc3339("1677-01-01T00:00:00Z"));
  EXPECT_FALSE(parse_http_date("Fri, 31 Dec 9999 23:59:59 GMT"));
  // From outside: a webhook body's created_at.
  auto sample = source_file("tests/data/workflow_job_in_progress.json");
  auto at = sample.find("\"created_at\": \"");
  ASSERT_NE(at, std::string::npos);
  sample.replace(at + 15, 4, "9999");
  auto ev = parse_job_event(sample);
  EXPECT_TRUE(!ev || ev->created_at > 0s) << rfc3339(ev->created_at);
}

// Far instants in GitHub's and SQS's answers overflowed on their way to the
// actor clock; they are clamped and stay far.
TEST(parser_fuzz, far_instants_stay_far_through_the_clock_bridge) {
  auto clocks = test_clocks();
  auto req = ghscale::testing::sample_github_request(github_op::delete_runner, ghscale::testing::repo_target);
  auto reset = parse_github_response(
    req, http_response{204, {{"x-ratelimit-reset", "99999999999"}}, {}}, clocks);
  ASSERT_TRUE(reset);
  EXPECT_GT(reset->rate.reset_at, clocks.actor_now) << "a reset in the year 5138 is not past";
  auto retry = parse_github_response(
    req, http_response{429, {{"retry-after", "99999999999"}}, {}}, clocks);
  ASSERT_TRUE(retry);
  EXPECT_GT(retry->retry_after, 24h) << "99999999999 seconds is more than a day";
  auto token = parse_github_response(
    ghscale::testing::sample_github_request(github_op::create_installation_token, ghscale::testing::repo_target),
    http_response{201, {}, secret_string{R"({"token":"t","expires_at":"1700-01-01T00:00:00Z"})"}},
    clocks);
  EXPECT_TRUE(!token || token->expires_at < clocks.actor_now) << "1700 is in the past";
  auto sqs = parse_sqs_receive(
    R"({"Messages":[{"ReceiptHandle":"r","Attributes":{"SentTimestamp":"9999999999999999"}}]})",
    clocks, "SQS ReceiveMessage");
  ASSERT_TRUE(sqs);
  EXPECT_GT(sqs->messages.at(0).sent_at, clocks.actor_now) << "the year 318857 is not past";
}

// "at":1e19 was read as a negative time; a trace's times stay within a year.
TEST(parser_fuzz, huge_trace_seconds_are_refused) {
  auto entries = scenario::parse_trace("{\"at\":1e19,\"restart\":true}\n", "t.jsonl");
  ASSERT_FALSE(entries);
  EXPECT_NE(describe(entries.error()).find("t.jsonl:1"), std::string::npos)
    << describe(entries.error());
}

// Died with a stack overflow (SIGSEGV) in RapidJSON's recursive parser.
TEST(parser_fuzz, deep_trace_line_is_refused) {
  auto entries = scenario::parse_trace(deep_arrays + "\n", "t.jsonl");
  EXPECT_FALSE(entries);
}

// Died with a stack overflow (SIGSEGV) in toml++; dots in strings and
// comments do not count.
TEST(parser_fuzz, deep_dotted_toml_keys_are_refused) {
  auto cfg = parse_config("a" + repeat(".a", deep) + " = 1\n", "t.toml");
  ASSERT_FALSE(cfg);
  EXPECT_NE(describe(cfg.error()).find("t.toml:1:1: more than 64 dots"), std::string::npos)
    << describe(cfg.error());
  auto dots = repeat(".", 100);
  auto quoted = parse_config("# " + dots + "\nnot_a_key = \"" + dots + "\"\n[x]\ny = '''\n"
                               + dots + "\n'''\n",
                             "t.toml");
  ASSERT_FALSE(quoted);
  EXPECT_EQ(describe(quoted.error()).find("dots"), std::string::npos)
    << describe(quoted.error());
}

} // namespace
