// GitHub REST on the wire: every request byte the service sends, every field
// it reads back, and the client actor between them, over a mock HTTP engine.
#include "actors/clients/github_rest_client.hpp"
#include "tests/actor_test.hpp"
#include "transport/github_rest.hpp"
#include "transport/wall_clock.hpp"

#include "tests/github_samples.hpp"

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace ghscale {
namespace {

using namespace std::chrono_literals;

using testing::org_target;
using testing::repo_target;
const github_endpoint dotcom{};
const caf::timespan exchange_timeout = 20s;

github_request make_request(github_op op, repository_ref target) {
  return testing::sample_github_request(op, std::move(target));
}

std::string header(const http_request& r, const std::string& name) {
  auto value = find_header(r.headers, name);
  return value != nullptr ? *value : "<absent>";
}

/// Equal as JSON values (member order does not matter).
bool same_json(const std::string& a, const std::string& b) {
  rapidjson::Document x;
  rapidjson::Document y;
  x.Parse(a.c_str());
  y.Parse(b.c_str());
  return !x.HasParseError() && !y.HasParseError() && x == y;
}

// -- requests ------------------------------------------------------------------

struct expected_call {
  github_op op;
  repository_ref target;
  const char* method;
  const char* path_and_query;
};

TEST(github_rest_request, every_op_for_org_and_repo_targets) {
  const std::vector<expected_call> calls = {
    {github_op::create_installation_token, org_target, "POST",
     "/app/installations/77/access_tokens"},
    {github_op::generate_jit_config, org_target, "POST",
     "/orgs/acme/actions/runners/generate-jitconfig"},
    {github_op::generate_jit_config, repo_target, "POST",
     "/repos/acme/web-app/actions/runners/generate-jitconfig"},
    {github_op::create_registration_token, org_target, "POST",
     "/orgs/acme/actions/runners/registration-token"},
    {github_op::create_registration_token, repo_target, "POST",
     "/repos/acme/web-app/actions/runners/registration-token"},
    {github_op::get_job, repo_target, "GET", "/repos/acme/web-app/actions/jobs/9001"},
    {github_op::list_runners, org_target, "GET",
     "/orgs/acme/actions/runners?per_page=100&page=3&name=ghscale-a1b2"},
    {github_op::list_runners, repo_target, "GET",
     "/repos/acme/web-app/actions/runners?per_page=100&page=3&name=ghscale-a1b2"},
    {github_op::delete_runner, org_target, "DELETE", "/orgs/acme/actions/runners/42"},
    {github_op::delete_runner, repo_target, "DELETE",
     "/repos/acme/web-app/actions/runners/42"},
    {github_op::get_runner_group, org_target, "GET",
     "/orgs/acme/actions/runner-groups?per_page=100&page=3"},
    {github_op::get_runner_group, repo_target, "GET",
     "/orgs/acme/actions/runner-groups?per_page=100&page=3"},
    {github_op::get_installation, org_target, "GET", "/orgs/acme/installation"},
    {github_op::get_installation, repo_target, "GET",
     "/repos/acme/web-app/installation"},
  };
  for (const auto& call : calls) {
    SCOPED_TRACE(to_string(call.op) + " " + call.target.full_name());
    auto req = make_request(call.op, call.target);
    auto r = build_github_request(dotcom, req, exchange_timeout);
    EXPECT_EQ(r.method, call.method);
    EXPECT_EQ(r.url, std::string{"https://api.github.com"} + call.path_and_query);
    EXPECT_EQ(header(r, "Accept"), "application/vnd.github+json");
    EXPECT_EQ(header(r, "X-GitHub-Api-Version"), "2022-11-28");
    EXPECT_EQ(header(r, "User-Agent"), "ghscale");
    EXPECT_EQ(header(r, "Authorization"), "Bearer ghs_installation_token");
    EXPECT_EQ(r.timeout, exchange_timeout);
    if (call.op != github_op::generate_jit_config) {
      EXPECT_TRUE(r.body.empty());
      EXPECT_EQ(header(r, "Content-Type"), "<absent>");
    }
  }
}

TEST(github_rest_request, jit_config_body_names_group_labels_and_work_folder) {
  auto req = make_request(github_op::generate_jit_config, repo_target);
  req.runner_group_id = 7;
  auto r = build_github_request(dotcom, req, exchange_timeout);
  EXPECT_EQ(header(r, "Content-Type"), "application/json");
  EXPECT_TRUE(same_json(r.body.value, R"({"name":"ghscale-a1b2","runner_group_id":7,
    "labels":["self-hosted","linux","x64"],"work_folder":"_work"})"))
    << r.body.value;
  req.runner_group_id = 0; // the Default group
  r = build_github_request(dotcom, req, exchange_timeout);
  EXPECT_TRUE(same_json(r.body.value, R"({"name":"ghscale-a1b2","runner_group_id":1,
    "labels":["self-hosted","linux","x64"],"work_folder":"_work"})"))
    << r.body.value;
}

TEST(github_rest_request, enterprise_server_base_url_and_custom_identity) {
  github_endpoint ghes{"https://ghe.example.com/api/v3/", "ghscale/1.2", "2022-11-28"};
  auto r = build_github_request(ghes, make_request(github_op::list_runners, org_target),
                                exchange_timeout);
  EXPECT_EQ(r.url, "https://ghe.example.com/api/v3/orgs/acme/actions/runners"
                   "?per_page=100&page=3&name=ghscale-a1b2");
  EXPECT_EQ(header(r, "User-Agent"), "ghscale/1.2");
  auto mint = make_request(github_op::create_installation_token, org_target);
  mint.credential = secret_string{"app.jwt.sig"};
  r = build_github_request(ghes, mint, exchange_timeout);
  EXPECT_EQ(r.url, "https://ghe.example.com/api/v3/app/installations/77/access_tokens");
  EXPECT_EQ(header(r, "Authorization"), "Bearer app.jwt.sig");
}

TEST(github_rest_request, names_are_percent_encoded_and_pages_start_at_one) {
  auto req = make_request(github_op::list_runners, repository_ref{"a b", "c/d", {}});
  req.page = 0;
  req.runner_name = "x y&z";
  auto r = build_github_request(dotcom, req, exchange_timeout);
  EXPECT_EQ(r.url, "https://api.github.com/repos/a%20b/c%2Fd/actions/runners"
                   "?per_page=100&page=1&name=x%20y%26z");
  req.runner_name.clear(); // every runner: no name filter
  r = build_github_request(dotcom, req, exchange_timeout);
  EXPECT_EQ(r.url, "https://api.github.com/repos/a%20b/c%2Fd/actions/runners"
                   "?per_page=100&page=1");
}

TEST(github_rest_request, printing_a_request_shows_no_credential) {
  auto r = build_github_request(dotcom, make_request(github_op::generate_jit_config,
                                                     org_target),
                                exchange_timeout);
  auto printed = caf::deep_to_string(r);
  EXPECT_EQ(printed.find("ghs_installation_token"), std::string::npos) << printed;
  EXPECT_NE(printed.find("generate-jitconfig"), std::string::npos) << printed;
}

TEST(github_rest_request, problems_are_named_before_anything_is_sent) {
  auto job = make_request(github_op::get_job, org_target);
  auto problem = github_request_problem(job);
  EXPECT_EQ(problem, errc::rejected);
  EXPECT_NE(describe(problem).find("needs a repository, got acme"), std::string::npos);
  EXPECT_FALSE(github_request_problem(make_request(github_op::get_job, repo_target)));
  auto mint = make_request(github_op::create_installation_token, repository_ref{});
  EXPECT_FALSE(github_request_problem(mint));
  auto ownerless = make_request(github_op::list_runners, repository_ref{});
  EXPECT_EQ(github_request_problem(ownerless), errc::rejected);
}

// -- responses -----------------------------------------------------------------

/// 2026-11-22T13:00:00Z on the wall clock is 1000 s on the actor clock.
clock_bridge test_clocks() {
  return clock_bridge{*parse_rfc3339("2026-11-22T13:00:00Z"), 1000s};
}
const int64_t wall_epoch_s = 1795352400; // 2026-11-22T13:00:00Z

http_response response(int32_t status, std::string body,
                       std::vector<http_header> headers = {}) {
  return http_response{status, std::move(headers), secret_string{std::move(body)}};
}

caf::expected<github_response> parse(github_op op, const http_response& r,
                                     repository_ref target = org_target) {
  return parse_github_response(make_request(op, std::move(target)), r, test_clocks());
}

TEST(github_rest_response, clock_bridge_anchor_is_what_the_tests_assume) {
  EXPECT_EQ(test_clocks().wall_now, caf::timespan{std::chrono::seconds{wall_epoch_s}});
}

TEST(github_rest_response, installation_token_and_its_expiry_on_the_actor_clock) {
  auto res = parse(github_op::create_installation_token,
                   response(201, R"({"token":"ghs_16C7e42F292c6912E7710c8","expires_at":
                     "2026-11-22T14:00:00Z","permissions":{},"repository_selection":"all"})"));
  ASSERT_TRUE(res) << describe(res.error());
  EXPECT_EQ(res->status, 201);
  EXPECT_EQ(res->secret.value, "ghs_16C7e42F292c6912E7710c8");
  EXPECT_EQ(res->expires_at, 1000s + 3600s);
}

TEST(github_rest_response, registration_token) {
  auto res = parse(github_op::create_registration_token,
                   response(201, R"({"token":"LLBF3JGZDX3P5PMEXLND6TS6FCWO6",
                     "expires_at":"2026-11-22T14:00:00.000+01:00"})"),
                   repo_target);
  ASSERT_TRUE(res) << describe(res.error());
  EXPECT_EQ(res->secret.value, "LLBF3JGZDX3P5PMEXLND6TS6FCWO6");
  EXPECT_EQ(res->expires_at, 1000s); // 14:00+01:00 is 13:00Z
}

TEST(github_rest_response, rate_limit_headers) {
  auto res = parse(github_op::delete_runner,
                   response(204, "",
                            {{"x-ratelimit-limit", "5000"},
                             {"x-ratelimit-remaining", " 4987 "},
                             {"x-ratelimit-reset", std::to_string(wall_epoch_s + 120)},
                             {"x-ratelimit-used", "13"}}));
  ASSERT_TRUE(res) << describe(res.error());
  EXPECT_EQ(res->status, 204);
  EXPECT_EQ(res->rate.limit, 5000);
  EXPECT_EQ(res->rate.remaining, 4987);
  EXPECT_EQ(res->rate.reset_at, 1120s);
  EXPECT_EQ(res->retry_after, 0s);
}

TEST(github_rest_response, absent_or_malformed_rate_limit_headers_read_as_unknown) {
  auto res = parse(github_op::delete_runner,
                   response(204, "", {{"x-ratelimit-limit", "lots"}}));
  ASSERT_TRUE(res);
  EXPECT_EQ(res->rate.limit, 0);
  EXPECT_EQ(res->rate.remaining, 0);
  EXPECT_EQ(res->rate.reset_at, 0s);
}

TEST(github_rest_response, retry_after_in_seconds_or_as_an_http_date) {
  auto in_seconds = parse(github_op::generate_jit_config,
                          response(403, R"({"message":"You have exceeded a secondary rate limit."})",
                                   {{"retry-after", "60"}}));
  ASSERT_TRUE(in_seconds);
  EXPECT_EQ(in_seconds->retry_after, 60s);
  EXPECT_EQ(in_seconds->message, "You have exceeded a secondary rate limit.");
  auto as_date = parse(github_op::generate_jit_config,
                       response(429, "", {{"Retry-After", "Sun, 22 Nov 2026 13:01:30 GMT"}}));
  ASSERT_TRUE(as_date);
  EXPECT_EQ(as_date->retry_after, 90s);
  auto past = parse(github_op::generate_jit_config,
                    response(429, "", {{"retry-after", "Sun, 22 Nov 2026 12:59:00 GMT"}}));
  ASSERT_TRUE(past);
  EXPECT_EQ(past->retry_after, 0s);
}

TEST(github_rest_response, jit_config) {
  auto res = parse(github_op::generate_jit_config,
                   response(201, R"({"runner":{"id":23,"name":"ghscale-a1b2","os":"unknown",
                     "status":"offline","busy":false,"labels":[]},
                     "encoded_jit_config":"eyJzZWNyZXQiOiJqaXQifQ=="})"));
  ASSERT_TRUE(res) << describe(res.error());
  EXPECT_EQ(res->runner_id, 23);
  EXPECT_EQ(res->secret.value, "eyJzZWNyZXQiOiJqaXQifQ==");
}

TEST(github_rest_response, job_status) {
  for (auto status : {"queued", "in_progress", "completed", "waiting"}) {
    auto res = parse(github_op::get_job,
                     response(200, std::string{R"({"id":9001,"run_id":5,"status":")"} + status
                                     + R"(","conclusion":null,"labels":["linux"]})"),
                     repo_target);
    ASSERT_TRUE(res) << describe(res.error());
    EXPECT_EQ(res->job_status, status);
  }
}

const char* runners_page = R"({"total_count":2,"runners":[
  {"id":1,"name":"ghscale-a","os":"linux","status":"online","busy":true,
   "labels":[{"id":1,"name":"self-hosted","type":"read-only"},{"id":9,"name":"gpu","type":"custom"}]},
  {"id":2,"name":"ghscale-b","os":"linux","status":"offline","busy":false,"labels":[]}]})";

TEST(github_rest_response, runners_and_link_pagination) {
  auto first = parse(github_op::list_runners,
                     response(200, runners_page,
                              {{"link", R"(<https://api.github.com/organizations/1/actions/runners?per_page=100&page=2>; rel="next", <https://api.github.com/organizations/1/actions/runners?per_page=100&page=5>; rel="last")"}}));
  ASSERT_TRUE(first) << describe(first.error());
  ASSERT_EQ(first->runners.size(), 2u);
  EXPECT_EQ(first->runners[0].id, 1);
  EXPECT_EQ(first->runners[0].name, "ghscale-a");
  EXPECT_EQ(first->runners[0].status, "online");
  EXPECT_TRUE(first->runners[0].busy);
  EXPECT_EQ(first->runners[0].labels, (std::vector<std::string>{"self-hosted", "gpu"}));
  EXPECT_EQ(first->runners[1].id, 2);
  EXPECT_FALSE(first->runners[1].busy);
  EXPECT_TRUE(first->runners[1].labels.empty());
  EXPECT_TRUE(first->has_next_page);
  auto last = parse(github_op::list_runners,
                    response(200, runners_page,
                             {{"Link", R"(<https://x/runners?page=1>; rel="first", <https://x/runners?page=4>; rel="prev")"}}));
  ASSERT_TRUE(last);
  EXPECT_FALSE(last->has_next_page);
  auto unquoted = parse(github_op::list_runners,
                        response(200, runners_page, {{"link", "<https://x/r?a=1,2>;rel=next"}}));
  ASSERT_TRUE(unquoted);
  EXPECT_TRUE(unquoted->has_next_page);
  auto single = parse(github_op::list_runners, response(200, runners_page));
  ASSERT_TRUE(single);
  EXPECT_FALSE(single->has_next_page);
}

TEST(github_rest_response, runner_group_found_by_name_or_zero) {
  const char* groups = R"({"total_count":2,"runner_groups":[
    {"id":1,"name":"Default","visibility":"all","default":true},
    {"id":12,"name":"ci-runners","visibility":"selected","default":false}]})";
  auto found = parse(github_op::get_runner_group, response(200, groups));
  ASSERT_TRUE(found) << describe(found.error());
  EXPECT_EQ(found->resource_id, 12);
  auto req = make_request(github_op::get_runner_group, org_target);
  req.runner_group = "gpu-pool";
  auto absent = parse_github_response(req, response(200, groups), test_clocks());
  ASSERT_TRUE(absent);
  EXPECT_EQ(absent->resource_id, 0);
}

TEST(github_rest_response, installation_id) {
  auto res = parse(github_op::get_installation,
                   response(200, R"({"id":1234567,"account":{"login":"acme"},"app_id":9})"),
                   repo_target);
  ASSERT_TRUE(res) << describe(res.error());
  EXPECT_EQ(res->resource_id, 1234567);
}

TEST(github_rest_response, error_bodies_give_githubs_message_only) {
  auto not_found = parse(github_op::get_installation,
                         response(404, R"({"message":"Not Found",
                           "documentation_url":"https://docs.github.com/rest"})"));
  ASSERT_TRUE(not_found);
  EXPECT_EQ(not_found->status, 404);
  EXPECT_EQ(not_found->message, "Not Found");
  EXPECT_TRUE(not_found->secret.empty());
  auto long_message = parse(github_op::generate_jit_config,
                            response(422, R"({"message":")" + std::string(5000, 'x')
                                            + R"("})"));
  ASSERT_TRUE(long_message);
  EXPECT_EQ(long_message->message, std::string(300, 'x') + "...");
  auto html = parse(github_op::get_job, response(502, "<html>Bad gateway</html>"),
                    repo_target);
  ASSERT_TRUE(html);
  EXPECT_EQ(html->status, 502);
  EXPECT_EQ(html->message, "");
}

TEST(github_rest_response, a_success_never_copies_its_body_into_message) {
  auto res = parse(github_op::get_job,
                   response(200, R"({"status":"queued","message":"ghs_secretish"})"),
                   repo_target);
  ASSERT_TRUE(res);
  EXPECT_EQ(res->message, "");
}

TEST(github_rest_response, missing_fields_are_backend_failures_naming_the_field) {
  struct missing_case {
    github_op op;
    const char* body;
    const char* field;
  };
  const std::vector<missing_case> cases = {
    {github_op::create_installation_token, R"({"token":"ghs_leaky_token"})", "'expires_at'"},
    {github_op::create_registration_token, R"({"expires_at":"2026-11-22T14:00:00Z"})", "'token'"},
    {github_op::generate_jit_config, R"({"runner":{"id":1},"encoded_jit_config":7})",
     "'encoded_jit_config'"},
    {github_op::generate_jit_config, R"({"encoded_jit_config":"ghs_leaky_token"})", "'runner'"},
    {github_op::generate_jit_config, R"({"runner":{},"encoded_jit_config":"x"})", "'runner.id'"},
    {github_op::get_job, R"({"id":9001})", "'status'"},
    {github_op::list_runners, R"({"total_count":0})", "'runners'"},
    {github_op::list_runners,
     R"({"runners":[{"id":1,"name":"a","status":"online","busy":false,"labels":[{"id":1}]}]})",
     "'runners[0].labels[0].name'"},
    {github_op::list_runners, R"({"runners":[{"id":1,"name":"a","status":"online"}]})",
     "'runners[0].busy'"},
    {github_op::get_runner_group, R"({"runner_groups":[{"name":"ci-runners"}]})",
     "'runner_groups[0].id'"},
    {github_op::get_installation, R"({"account":{}})", "'id'"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(to_string(c.op) + " " + c.body);
    auto res = parse(c.op, response(201, c.body), repo_target);
    ASSERT_FALSE(res);
    EXPECT_EQ(res.error(), errc::backend_failure);
    auto text = describe(res.error());
    EXPECT_NE(text.find(c.field), std::string::npos) << text;
    EXPECT_NE(text.find("GitHub " + to_string(c.op)), std::string::npos) << text;
    EXPECT_EQ(text.find("ghs_leaky_token"), std::string::npos) << text;
  }
}

TEST(github_rest_response, non_json_or_bad_dates_in_a_success_are_backend_failures) {
  auto not_json = parse(github_op::get_job, response(200, "ghs_leaky_token"), repo_target);
  ASSERT_FALSE(not_json);
  EXPECT_EQ(not_json.error(), errc::backend_failure);
  EXPECT_EQ(describe(not_json.error()).find("ghs_leaky_token"), std::string::npos);
  auto bad_date = parse(github_op::create_installation_token,
                        response(201, R"({"token":"ghs_leaky_token","expires_at":"soon"})"));
  ASSERT_FALSE(bad_date);
  EXPECT_EQ(bad_date.error(), errc::backend_failure);
  EXPECT_NE(describe(bad_date.error()).find("expires_at"), std::string::npos);
  EXPECT_EQ(describe(bad_date.error()).find("ghs_leaky_token"), std::string::npos);
}

// -- the client actor over a mock engine -------------------------------------

/// What the mock engine saw, and what it answers next (in order); with no
/// answer queued it keeps the request pending forever.
struct mock_engine_script {
  std::vector<http_request> seen;
  std::deque<caf::expected<http_response>> answers;
  std::vector<caf::response_promise> never_answered;
};

http_actor::behavior_type mock_engine(http_actor::pointer self,
                                      std::shared_ptr<mock_engine_script> script) {
  return {
    [self, script](atom::http, http_request& req) -> caf::result<http_response> {
      script->seen.push_back(req);
      if (script->answers.empty()) {
        auto rp = self->make_response_promise<http_response>();
        script->never_answered.push_back(rp);
        return rp;
      }
      auto answer = std::move(script->answers.front());
      script->answers.pop_front();
      if (!answer)
        return std::move(answer.error());
      return std::move(*answer);
    },
  };
}

class github_rest_client_test : public test::actor_test {
protected:
  github_rest_client_test() {
    engine = stop_at_teardown(sys.spawn(mock_engine, script));
    client = stop_at_teardown(
      sys.spawn(github_rest_client, ghes, engine, exchange_timeout, stats));
  }

  const github_endpoint ghes{"https://ghe.example.com/api/v3", "ghscale", "2022-11-28"};

  std::shared_ptr<mock_engine_script> script = std::make_shared<mock_engine_script>();
  metrics_ptr stats = std::make_shared<metrics>();
  http_actor engine;
  github_api_actor client;
};

TEST_F(github_rest_client_test, sends_the_built_request_and_parses_the_answer) {
  sched.advance_time(500s); // the actor clock is not at its epoch
  auto req = make_request(github_op::generate_jit_config, repo_target);
  auto reset_in = std::chrono::seconds{3600};
  auto wall_before = wall_now();
  auto reset_wall = std::chrono::duration_cast<std::chrono::seconds>(wall_before) + reset_in;
  script->answers.push_back(response(
    201, R"({"runner":{"id":5},"encoded_jit_config":"jit-config-blob"})",
    {{"x-ratelimit-limit", "5000"},
     {"x-ratelimit-remaining", "4999"},
     {"x-ratelimit-reset", std::to_string(reset_wall.count())}}));
  auto actor_now = sched.clock().now().time_since_epoch();
  auto res = ask<github_response>(client, atom::call_v, req);
  auto wall_after = wall_now();
  ASSERT_EQ(script->seen.size(), 1u);
  auto expected_http = build_github_request(ghes, req, exchange_timeout);
  EXPECT_EQ(script->seen[0].method, expected_http.method);
  EXPECT_EQ(script->seen[0].url,
            "https://ghe.example.com/api/v3/repos/acme/web-app/actions/runners/generate-jitconfig");
  EXPECT_EQ(script->seen[0].body, expected_http.body);
  EXPECT_EQ(header(script->seen[0], "Authorization"), "Bearer ghs_installation_token");
  EXPECT_EQ(script->seen[0].timeout, exchange_timeout);
  EXPECT_EQ(res.status, 201);
  EXPECT_EQ(res.runner_id, 5);
  EXPECT_EQ(res.secret.value, "jit-config-blob");
  // The reset lands on the actor clock, read against the wall clock at the
  // moment the response arrived (somewhere between the two readings).
  EXPECT_GE(res.rate.reset_at, actor_now + (reset_wall - wall_after));
  EXPECT_LE(res.rate.reset_at, actor_now + (reset_wall - wall_before));
  EXPECT_EQ(stats->count("ghscale_github_http_requests_total",
                         {{"class", "2xx"}, {"op", "generate_jit_config"}}),
            1);
}

TEST_F(github_rest_client_test, http_errors_are_responses) {
  script->answers.push_back(response(404, R"({"message":"Not Found"})"));
  auto res = ask<github_response>(client, atom::call_v,
                                  make_request(github_op::get_job, repo_target));
  EXPECT_EQ(res.status, 404);
  EXPECT_EQ(res.message, "Not Found");
  EXPECT_EQ(stats->count("ghscale_github_http_requests_total",
                         {{"class", "4xx"}, {"op", "get_job"}}),
            1);
}

TEST_F(github_rest_client_test, transport_errors_pass_through_unchanged) {
  script->answers.push_back(caf::make_error(
    errc::timeout, "HTTP GET https://ghe.example.com/api/v3/orgs/acme/installation: timed out"));
  auto res = try_ask<github_response>(client, atom::call_v,
                                      make_request(github_op::get_installation, org_target));
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::timeout);
  EXPECT_EQ(describe(res.error()),
            describe(caf::make_error(
              errc::timeout,
              "HTTP GET https://ghe.example.com/api/v3/orgs/acme/installation: timed out")));
  EXPECT_EQ(stats->count("ghscale_github_http_requests_total",
                         {{"class", "transport_error"}, {"op", "get_installation"}}),
            1);
}

TEST_F(github_rest_client_test, an_invalid_success_body_is_a_backend_failure) {
  test::log_capture logs;
  script->answers.push_back(response(201, R"({"token":"ghs_never_logged"})"));
  auto res = try_ask<github_response>(
    client, atom::call_v, make_request(github_op::create_installation_token, org_target));
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::backend_failure);
  EXPECT_EQ(stats->count("ghscale_github_invalid_responses_total",
                         {{"op", "create_installation_token"}}),
            1);
  EXPECT_EQ(logs.lines_containing("github_invalid_response"), 1u);
  EXPECT_EQ(logs.lines_containing("ghs_never_logged"), 0u);
  EXPECT_EQ(logs.lines_containing("ghs_installation_token"), 0u);
}

TEST_F(github_rest_client_test, a_request_that_cannot_be_sent_never_reaches_the_engine) {
  auto res = try_ask<github_response>(client, atom::call_v,
                                      make_request(github_op::get_job, org_target));
  ASSERT_FALSE(res);
  EXPECT_EQ(res.error(), errc::rejected);
  EXPECT_TRUE(script->seen.empty());
}

TEST_F(github_rest_client_test, an_engine_that_never_answers_times_out) {
  auto slot = spawn_requester<github_response>(
    client, 1h, atom::call_v, make_request(github_op::list_runners, org_target));
  advance(exchange_timeout);
  EXPECT_FALSE(slot->has_value()); // the engine's own timeout comes first
  advance(10s);
  ASSERT_TRUE(slot->has_value());
  ASSERT_FALSE(**slot);
  EXPECT_EQ((*slot)->error(), caf::sec::request_timeout);
  EXPECT_EQ(script->seen.size(), 1u);
}

} // namespace
} // namespace ghscale
