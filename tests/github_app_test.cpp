// The GitHub App actor: lazy installation clients, JWT caching, token mints,
// against a scripted GitHub (typed mock behind github_api_actor).
#include "actors/github_app.hpp"
#include "tests/actor_test.hpp"

#include <memory>
#include <string>
#include <vector>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

struct github_script {
  int32_t mint_status = 201;
  std::vector<github_request> calls;
};

github_api_actor::behavior_type mock_api(github_api_actor::pointer self,
                                         std::shared_ptr<github_script> script) {
  return {
    [=](atom::call, github_request& req) {
      script->calls.push_back(req);
      github_response res;
      res.status = 200;
      if (req.op == github_op::create_installation_token) {
        res.status = script->mint_status;
        if (res.status == 201) {
          res.secret = {"ghs-" + std::to_string(script->calls.size())};
          res.expires_at = self->clock().now().time_since_epoch() + 1h;
        } else {
          res.message = "Bad credentials";
        }
      }
      if (req.op == github_op::generate_jit_config) {
        res.status = 201;
        res.runner_id = 77;
        res.secret = {"jit-config"};
      }
      return res;
    },
  };
}

/// Signs "JWTs" that name the time they were made for.
struct jwt_script {
  std::vector<caf::timespan> signed_at;
  bool fail = false;
};

class GithubAppTest : public test::actor_test {
protected:
  GithubAppTest() {
    app_cfg.name = "ci";
    app_cfg.app_id = 12;
    api = stop_at_teardown(sys.spawn(mock_api, github));
    jwt_minter minter = [jwts = jwts](caf::timespan now)
      -> caf::expected<secret_string> {
      if (jwts->fail)
        return caf::make_error(errc::invalid_config, "private key unreadable");
      jwts->signed_at.push_back(now);
      return secret_string{"jwt-" + std::to_string(jwts->signed_at.size())};
    };
    app = stop_at_teardown(
      sys.spawn(github_app, app_cfg, timeouts, minter, api, stats, uint64_t{3}));
  }

  caf::expected<installation_client_actor> client(int64_t installation) {
    return try_ask<installation_client_actor>(app, atom::client_v, installation);
  }

  caf::expected<github_response> mint(int64_t installation) {
    return try_ask<github_response>(app, atom::mint_v, installation);
  }

  github_app_config app_cfg;
  timeouts_config timeouts;
  metrics_ptr stats = std::make_shared<metrics>();
  std::shared_ptr<github_script> github = std::make_shared<github_script>();
  std::shared_ptr<jwt_script> jwts = std::make_shared<jwt_script>();
  github_api_actor api;
  github_app_actor app;
};

TEST_F(GithubAppTest, SpawnsOneClientPerInstallationLazily) {
  auto first = client(5);
  auto again = client(5);
  auto other = client(6);
  ASSERT_TRUE(first && again && other);
  EXPECT_EQ(*first, *again);
  EXPECT_NE(*first, *other);
  EXPECT_TRUE(github->calls.empty()); // spawning a client costs no call
  EXPECT_TRUE(jwts->signed_at.empty());
}

TEST_F(GithubAppTest, RespawnsAClientThatDied) {
  auto first = client(5);
  ASSERT_TRUE(first);
  // As a crash ends it (an unhandled exception exits with runtime_error).
  self->send_exit(*first, caf::make_error(caf::sec::runtime_error));
  sched.run();
  auto second = client(5);
  ASSERT_TRUE(second);
  EXPECT_NE(*first, *second);
  // The App itself lives on and the new client works.
  EXPECT_TRUE(try_ask<budget_status>(*second, atom::budget_v));
}

TEST_F(GithubAppTest, ClientsEndWithTheApp) {
  auto first = client(5);
  ASSERT_TRUE(first);
  self->monitor(*first);
  self->send_exit(app, caf::exit_reason::user_shutdown);
  sched.run();
  EXPECT_EQ(down_reason(), caf::error{caf::exit_reason::user_shutdown});
}

TEST_F(GithubAppTest, MintsWithACachedJwt) {
  auto first = mint(5);
  ASSERT_TRUE(first) << describe(first.error());
  EXPECT_EQ(first->status, 201);
  EXPECT_EQ(first->secret.value, "ghs-1");
  sched.advance_time(7min);
  auto second = mint(6);
  ASSERT_TRUE(second);
  EXPECT_EQ(jwts->signed_at.size(), 1u); // reused within 8 min
  sched.advance_time(61s);
  auto third = mint(5);
  ASSERT_TRUE(third);
  ASSERT_EQ(jwts->signed_at.size(), 2u);
  EXPECT_EQ(jwts->signed_at[1] - jwts->signed_at[0], 8min + 1s);
  ASSERT_EQ(github->calls.size(), 3u);
  EXPECT_EQ(github->calls[0].credential.value, "jwt-1");
  EXPECT_EQ(github->calls[0].installation_id, 5);
  EXPECT_EQ(github->calls[0].op, github_op::create_installation_token);
  EXPECT_EQ(github->calls[1].credential.value, "jwt-1");
  EXPECT_EQ(github->calls[1].installation_id, 6);
  EXPECT_EQ(github->calls[2].credential.value, "jwt-2");
}

TEST_F(GithubAppTest, RefusedMintIsAnErrorWithoutTheJwt) {
  github->mint_status = 401;
  auto refused = mint(5);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), errc::rejected);
  auto text = describe(refused.error());
  EXPECT_EQ(text, "rejected: create_installation_token: 401 Bad credentials");
  // GitHub refused the JWT: the next mint signs a new one.
  github->mint_status = 503;
  auto failed = mint(5);
  ASSERT_FALSE(failed);
  EXPECT_EQ(failed.error(), errc::backend_failure);
  EXPECT_EQ(jwts->signed_at.size(), 2u);
}

TEST_F(GithubAppTest, JwtSigningFailureIsAnError) {
  jwts->fail = true;
  auto result = mint(5);
  ASSERT_FALSE(result);
  EXPECT_EQ(result.error(), errc::invalid_config);
  EXPECT_TRUE(github->calls.empty());
}

TEST_F(GithubAppTest, ClientsMintThroughTheApp) {
  auto c = client(5);
  ASSERT_TRUE(c);
  auto reg = try_ask<runner_registration>(
    *c, atom::registration_v,
    registration_request{repository_ref{"octo", "", owner_type::organization},
                         "pool-i-1", {"linux"}, "Default", true});
  ASSERT_TRUE(reg) << describe(reg.error());
  EXPECT_EQ(reg->runner_id, 77);
  EXPECT_EQ(reg->config.value, "jit-config");
  ASSERT_EQ(github->calls.size(), 2u);
  EXPECT_EQ(github->calls[0].op, github_op::create_installation_token);
  EXPECT_EQ(github->calls[1].op, github_op::generate_jit_config);
  EXPECT_EQ(github->calls[1].credential.value, "ghs-1");
  EXPECT_EQ(github->calls[1].installation_id, 5);
}

} // namespace
