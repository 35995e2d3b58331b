// Every GitHub request ghscale makes, sent through the real HTTP engine to
// prism serving GitHub's own OpenAPI description (@octokit/openapi), which
// validates path, query, headers and body; and prism's example answers read
// back by parse_github_response.
#include "actors/clients/http_client.hpp"
#include "messages/actors.hpp"
#include "tests/peer_process.hpp"
#include "transport/github_rest.hpp"
#include "transport/wall_clock.hpp"

#include <caf/all.hpp>
#include "tests/github_samples.hpp"

#include <gtest/gtest.h>
#include <rapidjson/document.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#ifndef GHSCALE_SOURCE_DIR
#  error "GHSCALE_SOURCE_DIR must name the repository root"
#endif

namespace ghscale {
namespace {

using namespace std::chrono_literals;

const std::string peers_dir = GHSCALE_SOURCE_DIR "/tests/peers/node_modules";

using testing::org_target;
using testing::repo_target;
const caf::timespan exchange_timeout = 30s;

/// The description's only example of a job lacks `created_at`, which its own
/// schema requires: prism (with --errors) refuses to serve it, naming only
/// the response. The job's parsing is covered by github_rest_test.
bool example_is_invalid(github_op op) {
  return op == github_op::get_job;
}

/// The sample request, naming the runner group of the description's example.
github_request make_request(github_op op, repository_ref target) {
  auto req = testing::sample_github_request(op, std::move(target));
  req.runner_group = "octo-runner-group";
  req.page = 2;
  return req;
}

/// Every request the service makes: each op, for org and repo targets.
std::vector<github_request> every_request() {
  std::vector<github_request> out;
  out.push_back(make_request(github_op::create_installation_token, repository_ref{}));
  for (auto op : {github_op::generate_jit_config, github_op::create_registration_token,
                  github_op::list_runners, github_op::delete_runner,
                  github_op::get_runner_group, github_op::get_installation}) {
    out.push_back(make_request(op, org_target));
    out.push_back(make_request(op, repo_target));
  }
  out.push_back(make_request(github_op::get_job, repo_target));
  auto in_group = make_request(github_op::generate_jit_config, org_target);
  in_group.runner_group_id = 2;
  out.push_back(in_group);
  return out;
}

/// Prism's complaints (the sl-violations header), split by where they are.
struct violations {
  std::vector<std::string> request;
  std::vector<std::string> response;
};

violations violations_of(const http_response& r) {
  violations out;
  auto header = find_header(r.headers, "sl-violations");
  if (header == nullptr)
    return out;
  rapidjson::Document doc;
  doc.Parse(header->c_str());
  if (doc.HasParseError() || !doc.IsArray()) {
    out.request.push_back("unreadable sl-violations: " + *header);
    return out;
  }
  for (const auto& v : doc.GetArray()) {
    bool in_response = v.HasMember("location") && v["location"].IsArray()
                       && !v["location"].Empty() && v["location"][0].IsString()
                       && std::string{v["location"][0].GetString()} == "response";
    auto text = v.HasMember("message") && v["message"].IsString()
                  ? std::string{v["message"].GetString()}
                  : std::string{"?"};
    (in_response ? out.response : out.request).push_back(text);
  }
  return out;
}

std::string joined(const std::vector<std::string>& xs) {
  std::string out;
  for (const auto& x : xs)
    out += x + "; ";
  return out;
}

class github_prism : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    auto port = testing::free_loopback_port();
    // The description is 13 MB: prism needs about 10 s to load it.
    prism_ = new testing::peer_process(
      {peers_dir + "/.bin/prism", "mock", "-h", "127.0.0.1", "-p",
       std::to_string(port), "--errors", "-v", "warn",
       peers_dir + "/@octokit/openapi/generated/api.github.com.json"},
      port, {}, std::chrono::seconds{240});
  }

  static void TearDownTestSuite() {
    delete prism_;
    prism_ = nullptr;
  }

  static caf::actor_system_config& prepare(caf::actor_system_config& cfg) {
    register_types(cfg);
    return cfg;
  }

  ~github_prism() override {
    self_->send_exit(http_, caf::exit_reason::user_shutdown);
  }

  github_endpoint endpoint() const {
    return github_endpoint{prism_->url(), "ghscale", "2022-11-28"};
  }

  /// One exchange through the real engine; fails the test on a transport error.
  http_response exchange(http_request req) {
    http_response out;
    self_->request(http_, exchange_timeout + 5s, atom::http_v, std::move(req))
      .receive([&](http_response& r) { out = std::move(r); },
               [&](caf::error& err) {
                 ADD_FAILURE() << "transport error: " << describe(err);
               });
    return out;
  }

  static inline testing::peer_process* prism_ = nullptr;
  caf::actor_system_config cfg_;
  caf::actor_system sys_{prepare(cfg_)};
  http_engine_actor http_ = sys_.spawn(http_client, http_engine_options{});
  caf::scoped_actor self_{sys_};
};

TEST_F(github_prism, every_request_passes_validation) {
  for (const auto& req : every_request()) {
    auto http_req = build_github_request(endpoint(), req, exchange_timeout);
    SCOPED_TRACE(http_req.method + " " + http_req.url);
    auto r = exchange(http_req);
    auto found = violations_of(r);
    EXPECT_TRUE(found.request.empty()) << joined(found.request);
    // Prism negotiates only the media types the description lists
    // (application/json), so GitHub's vendor type `application/vnd.github+json`
    // earns a 406 once the request has passed validation. Deletions have no
    // content to negotiate.
    if (req.op == github_op::delete_runner) {
      EXPECT_EQ(r.status, 204);
    } else if (example_is_invalid(req.op)) {
      EXPECT_TRUE(r.status == 406 || r.status == 500) << r.status;
    } else {
      EXPECT_EQ(r.status, 406) << r.body.value;
      EXPECT_NE(r.body.value.find("NOT_ACCEPTABLE"), std::string::npos) << r.body.value;
    }
  }
}

TEST_F(github_prism, example_answers_parse) {
  auto clocks = clock_bridge{wall_now(), caf::timespan{0}};
  for (const auto& req : every_request()) {
    auto http_req = build_github_request(endpoint(), req, exchange_timeout);
    SCOPED_TRACE(http_req.method + " " + http_req.url);
    for (auto& h : http_req.headers)
      if (h.name == "Accept")
        h.value = "application/json"; // what prism can serve, see above
    auto r = exchange(http_req);
    auto found = violations_of(r);
    EXPECT_TRUE(found.request.empty()) << joined(found.request);
    if (example_is_invalid(req.op)) {
      EXPECT_EQ(r.status, 500);
      EXPECT_FALSE(found.response.empty());
      continue;
    }
    EXPECT_TRUE(found.response.empty()) << joined(found.response);
    ASSERT_LT(r.status, 300) << r.body.value;
    auto res = parse_github_response(req, r, clocks);
    ASSERT_TRUE(res) << describe(res.error());
    EXPECT_EQ(res->status, r.status);
    switch (req.op) {
      case github_op::create_installation_token:
      case github_op::create_registration_token:
        EXPECT_FALSE(res->secret.empty());
        EXPECT_NE(res->expires_at, caf::timespan{0});
        break;
      case github_op::generate_jit_config:
        EXPECT_GT(res->runner_id, 0);
        EXPECT_FALSE(res->secret.empty());
        break;
      case github_op::list_runners:
        EXPECT_FALSE(res->runners.empty());
        EXPECT_FALSE(res->runners[0].labels.empty());
        EXPECT_TRUE(res->has_next_page); // the example's Link has rel="next"
        break;
      case github_op::get_runner_group:
        EXPECT_EQ(res->resource_id, 2); // "octo-runner-group" in the example
        break;
      case github_op::get_installation:
        EXPECT_GT(res->resource_id, 0);
        break;
      case github_op::delete_runner:
        EXPECT_EQ(res->status, 204);
        break;
      case github_op::get_job:
        break;
    }
  }
}

TEST_F(github_prism, prism_does_reject_a_request_github_would_refuse) {
  // The check above can fail: a JIT request without labels is refused.
  auto req = make_request(github_op::generate_jit_config, org_target);
  auto http_req = build_github_request(endpoint(), req, exchange_timeout);
  http_req.body = secret_string{R"({"name":"ghscale-a1b2","runner_group_id":1})"};
  auto r = exchange(http_req);
  EXPECT_EQ(r.status, 422);
  EXPECT_NE(joined(violations_of(r).request).find("labels"), std::string::npos);
}

} // namespace
} // namespace ghscale
