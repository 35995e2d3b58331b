#include "actors/github_app.hpp"

#include "actors/clock.hpp"
#include "actors/installation_client.hpp"
#include "actors/ops/log.hpp"

#include <algorithm>
#include <memory>
#include <string>
#include <utility>

namespace ghscale {

namespace {

using namespace std::chrono_literals;
using app_ptr = github_app_actor::stateful_pointer<github_app_state>;

/// A minted App JWT is valid for 9 minutes (GitHub allows at most 10); it is
/// reused until a minute before that, so no call carries one about to lapse.
constexpr caf::timespan jwt_validity = 9min;
constexpr caf::timespan jwt_reuse_margin = 60s;

caf::expected<secret_string> app_jwt(app_ptr self, const jwt_minter& jwt) {
  auto& st = self->state;
  auto t = now(self);
  if (!st.jwt.empty() && t < st.jwt_reuse_until)
    return st.jwt;
  auto fresh = jwt(t);
  if (!fresh)
    return std::move(fresh.error());
  st.jwt = std::move(*fresh);
  st.jwt_reuse_until = t + jwt_validity - jwt_reuse_margin;
  return st.jwt;
}

void forget_installation(app_ptr self, int64_t installation_id) {
  auto& known = self->state.installations;
  for (auto i = known.begin(); i != known.end();)
    i = i->second == installation_id ? known.erase(i) : std::next(i);
}

/// Asks GitHub which installation of the App owns `target`, with the JWT.
caf::result<int64_t> lookup_installation(app_ptr self, const github_app_config& app,
                                         const timeouts_config& timeouts,
                                         const jwt_minter& jwt,
                                         const github_api_actor& api,
                                         const repository_ref& target) {
  auto key = target.full_name();
  if (auto i = self->state.installations.find(key);
      i != self->state.installations.end())
    return i->second;
  auto credential = app_jwt(self, jwt);
  if (!credential)
    return std::move(credential.error());
  github_request call;
  call.op = github_op::get_installation;
  call.credential = std::move(*credential);
  call.target = target;
  auto rp = self->make_response_promise<int64_t>();
  self->request(api, timeouts.github_call, atom::call_v, std::move(call))
    .then(
      [self, rp, key, name = app.name](github_response& res) mutable {
        if (res.status == 200 && res.resource_id > 0) {
          self->state.installations[key] = res.resource_id;
          rp.deliver(res.resource_id);
          return;
        }
        auto code = res.status == 404   ? errc::not_found
                    : res.status >= 500 ? errc::backend_failure
                                        : errc::rejected;
        rp.deliver(caf::make_error(code, "installation of App '" + name + "' for '"
                                           + key + "': " + std::to_string(res.status)
                                           + " " + res.message));
      },
      [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
  return rp;
}

/// Turns GitHub's answer to a token mint into the reply: 201 or an error
/// that names the status, never the credential.
caf::expected<github_response> mint_result(app_ptr self, int64_t installation_id,
                                           github_response& res) {
  if (res.status == 201)
    return std::move(res);
  if (res.status == 401) // GitHub refused the JWT: sign a new one next time
    self->state.jwt = {};
  if (res.status == 404) // uninstalled or reinstalled: look targets up again
    forget_installation(self, installation_id);
  auto code = res.status >= 500 ? errc::backend_failure : errc::rejected;
  return caf::make_error(code, "create_installation_token: "
                                 + std::to_string(res.status) + " "
                                 + res.message);
}

installation_client_actor client_of(app_ptr self, int64_t installation_id,
                                    const github_app_config& app,
                                    const timeouts_config& timeouts,
                                    const github_api_actor& api,
                                    const metrics_ptr& stats, uint64_t seed) {
  auto& clients = self->state.clients;
  if (auto i = clients.find(installation_id); i != clients.end())
    return i->second;
  auto client = self->spawn<caf::linked>(
    installation_client, installation_id, app, timeouts,
    caf::actor_cast<github_app_actor>(self), api, stats,
    seed ^ static_cast<uint64_t>(installation_id));
  clients.emplace(installation_id, client);
  log::info("installation client started",
            {{"app", app.name}, {"installation", installation_id}});
  if (self->state.draining)
    caf::anon_send(client, atom::drain_v);
  return client;
}

} // namespace

github_app_actor::behavior_type
github_app(github_app_actor::stateful_pointer<github_app_state> self,
           github_app_config app, timeouts_config timeouts, jwt_minter jwt,
           github_api_actor api, metrics_ptr stats, uint64_t seed) {
  // A client's exit drops it, so the next `client` request spawns a fresh
  // one; any other exit request (the supervisor, a shutdown) ends the App
  // and, through the links, its clients.
  self->set_exit_handler([self, name = app.name](caf::exit_msg& msg) {
    auto& clients = self->state.clients;
    auto i = std::find_if(clients.begin(), clients.end(), [&](auto& entry) {
      return entry.second.address() == msg.source;
    });
    if (i == clients.end()) {
      self->quit(msg.reason);
      return;
    }
    log::warn("installation client exited",
              {{"app", name}, {"installation", i->first},
               {"reason", describe(msg.reason)}});
    clients.erase(i);
  });
  return {
    [=](atom::drain, caf::timespan) -> caf::result<bool> {
      auto& st = self->state;
      st.draining = true;
      auto rp = self->make_response_promise<bool>();
      auto left = std::make_shared<size_t>(st.clients.size());
      if (*left == 0)
        rp.deliver(true);
      for (auto& [id, client] : st.clients)
        self->request(client, timeouts.drain, atom::drain_v)
          .then([=](bool) mutable {
                  if (--*left == 0)
                    rp.deliver(true);
                },
                [=](const caf::error&) mutable {
                  if (--*left == 0)
                    rp.deliver(true);
                });
      return rp;
    },
    [=](atom::client, int64_t installation_id) {
      return client_of(self, installation_id, app, timeouts, api, stats, seed);
    },
    [=](atom::lookup, const repository_ref& target) {
      return lookup_installation(self, app, timeouts, jwt, api, target);
    },
    [=](atom::mint, int64_t installation_id) -> caf::result<github_response> {
      auto credential = app_jwt(self, jwt);
      if (!credential) {
        log::error("app jwt unavailable",
                   {{"app", app.name}, {"error", describe(credential.error())}});
        return std::move(credential.error());
      }
      github_request call;
      call.op = github_op::create_installation_token;
      call.installation_id = installation_id;
      call.credential = std::move(*credential);
      auto rp = self->make_response_promise<github_response>();
      self->request(api, timeouts.github_call, atom::call_v, std::move(call))
        .then(
          [self, rp, stats, installation_id](github_response& res) mutable {
            stats->add("ghscale_github_requests_total",
                       {{"op", to_string(github_op::create_installation_token)},
                        {"status", std::to_string(res.status)}});
            auto result = mint_result(self, installation_id, res);
            if (result)
              rp.deliver(std::move(*result));
            else
              rp.deliver(std::move(result.error()));
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
  };
}

} // namespace ghscale
