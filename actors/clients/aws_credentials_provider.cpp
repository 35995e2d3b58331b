#include "actors/clients/aws_credentials_provider.hpp"

#include "messages/text.hpp"
#include "actors/clock.hpp"
#include "actors/ops/log.hpp"
#include "transport/wall_clock.hpp"

#include <algorithm>
#include <cctype>
#include <memory>
#include <utility>

namespace ghscale {

namespace {

using provider_pointer
  = aws_credentials_actor::stateful_pointer<aws_credentials_provider_state>;

constexpr auto imds_token_ttl = std::chrono::hours(6);
constexpr const char* default_imds_endpoint = "http://169.254.169.254";

/// What the provider was spawned with, shared by its callbacks.
struct chain_context {
  env_lookup env;
  http_actor http;
  aws_credentials_options opts;
};
using context_ptr = std::shared_ptr<const chain_context>;

/// One walk down the chain: why each source tried so far gave nothing.
struct resolution {
  std::vector<std::string> reasons;
  std::string imds_endpoint;
  secret_string imds_token;
};
using resolution_ptr = std::shared_ptr<resolution>;

/// The "what and where" of an error, without its category.
std::string reason_of(const caf::error& err) {
  if (err == caf::sec::request_timeout)
    return "timeout";
  auto& ctx = err.context();
  if (ctx.match_elements<std::string>())
    return ctx.get_as<std::string>(0);
  return describe(err);
}

caf::error no_credentials(const std::vector<std::string>& reasons) {
  std::string text = "no AWS credentials: ";
  for (size_t i = 0; i < reasons.size(); ++i)
    text += (i > 0 ? "; " : "") + reasons[i];
  return caf::make_error(errc::invalid_config, std::move(text));
}

bool usable(const aws_credentials_provider_state& st, caf::timespan now) {
  return st.current && (st.expires_at == caf::timespan{0} || now < st.expires_at);
}

void deliver_to_waiters(provider_pointer self,
                        const caf::expected<aws_credentials>& answer) {
  auto waiters = std::move(self->state.waiters);
  self->state.waiters.clear();
  for (auto& rp : waiters) {
    if (answer)
      rp.deliver(*answer);
    else
      rp.deliver(answer.error());
  }
}

void arm_refresh(provider_pointer self, caf::timespan delay) {
  self->state.refresh_at = now(self) + delay;
  self->delayed_send(self, delay, atom::refresh_v);
}

void adopt(provider_pointer self, const context_ptr& ctx, aws_credentials creds,
           caf::timespan expires_at) {
  auto& st = self->state;
  auto t = now(self);
  st.current = std::move(creds);
  st.expires_at = expires_at;
  st.refresh_at = caf::timespan{0};
  int64_t expires_in_s = -1;
  if (expires_at != caf::timespan{0}) {
    // Never sooner than the failure retry: credentials that come with little
    // time left must not make us hammer their source.
    auto due = std::max(expires_at - ctx->opts.refresh_before - t,
                        ctx->opts.retry_after_failure);
    arm_refresh(self, due);
    expires_in_s = std::chrono::duration_cast<std::chrono::seconds>(expires_at - t)
                     .count();
  }
  log::info("aws credentials resolved",
            {{"source", st.current->source}, {"expires_in_s", expires_in_s}});
  deliver_to_waiters(self, *st.current);
}

void fail(provider_pointer self, const context_ptr& ctx, const caf::error& err) {
  auto& st = self->state;
  log::warn("aws credentials unavailable", {{"error", describe(err)}});
  if (usable(st, now(self))) {
    // Keep serving what still works; try again soon.
    arm_refresh(self, ctx->opts.retry_after_failure);
    deliver_to_waiters(self, *st.current);
    return;
  }
  deliver_to_waiters(self, err);
}

/// Ends a resolution: the credentials found, or why none were.
void finish(provider_pointer self, const context_ptr& ctx,
            caf::expected<aws_credentials> found) {
  self->state.resolving = false;
  if (!found)
    return fail(self, ctx, found.error());
  auto expires_at = caf::timespan{0};
  if (found->expires_at != caf::timespan{0}) {
    clock_bridge bridge{wall_now(), now(self)};
    expires_at = bridge.to_actor(found->expires_at);
    if (expires_at <= now(self))
      return fail(self, ctx,
                  caf::make_error(errc::invalid_config,
                                  "AWS credentials from " + found->source
                                    + " have expired"));
  }
  adopt(self, ctx, std::move(*found), expires_at);
}

/// One IMDS request with the configured timeout on both ends.
template <class OnResponse>
void ask_imds(provider_pointer self, const context_ptr& ctx,
              const resolution_ptr& walk, http_request req, OnResponse on_response) {
  req.timeout = ctx->opts.imds_timeout;
  self->request(ctx->http, ctx->opts.imds_timeout, atom::http_v, std::move(req))
    .then(on_response, [=](caf::error& err) {
      walk->reasons.push_back("IMDS " + walk->imds_endpoint + ": " + reason_of(err));
      finish(self, ctx, no_credentials(walk->reasons));
    });
}

/// Takes the value of `step` or ends the resolution with its error.
template <class T>
bool imds_step_ok(provider_pointer self, const context_ptr& ctx,
                  const resolution_ptr& walk, const caf::expected<T>& step) {
  if (step)
    return true;
  walk->reasons.push_back("IMDS " + walk->imds_endpoint + ": "
                          + reason_of(step.error()));
  finish(self, ctx, no_credentials(walk->reasons));
  return false;
}

void fetch_imds_credentials(provider_pointer self, const context_ptr& ctx,
                            const resolution_ptr& walk, const std::string& role) {
  ask_imds(self, ctx, walk,
           imds_credentials_request(walk->imds_endpoint, walk->imds_token, role),
           [=](http_response& r) {
             auto creds = parse_imds_credentials(r, role);
             if (imds_step_ok(self, ctx, walk, creds))
               finish(self, ctx, std::move(creds));
           });
}

void fetch_imds_role(provider_pointer self, const context_ptr& ctx,
                     const resolution_ptr& walk) {
  ask_imds(self, ctx, walk, imds_role_request(walk->imds_endpoint, walk->imds_token),
           [=](http_response& r) {
             auto role = parse_imds_role(r);
             if (imds_step_ok(self, ctx, walk, role))
               fetch_imds_credentials(self, ctx, walk, *role);
           });
}

void fetch_imds_token(provider_pointer self, const context_ptr& ctx,
                      const resolution_ptr& walk) {
  ask_imds(self, ctx, walk, imds_token_request(walk->imds_endpoint, imds_token_ttl),
           [=](http_response& r) {
             auto token = parse_imds_token(r);
             if (!imds_step_ok(self, ctx, walk, token))
               return;
             walk->imds_token = std::move(*token);
             fetch_imds_role(self, ctx, walk);
           });
}

/// A source's answer: true when it ends the walk (credentials, or a
/// misconfiguration that must not fall through to another identity).
bool settles(provider_pointer self, const context_ptr& ctx,
             const resolution_ptr& walk, caf::expected<aws_credentials>& found) {
  if (found) {
    finish(self, ctx, std::move(found));
    return true;
  }
  walk->reasons.push_back(reason_of(found.error()));
  if (found.error() == errc::not_found)
    return false;
  finish(self, ctx, no_credentials(walk->reasons));
  return true;
}

/// Walks the chain: environment, shared files, IMDS.
void resolve(provider_pointer self, const context_ptr& ctx) {
  self->state.resolving = true;
  auto walk = std::make_shared<resolution>();
  auto from_env = credentials_from_environment(ctx->env);
  if (settles(self, ctx, walk, from_env))
    return;
  auto from_profile = load_profile(locate_profile(ctx->env, ctx->opts.profile));
  if (settles(self, ctx, walk, from_profile))
    return;
  auto endpoint = ctx->env("AWS_EC2_METADATA_SERVICE_ENDPOINT").value_or("");
  walk->imds_endpoint = endpoint.empty() ? default_imds_endpoint : endpoint;
  if (iequals(ctx->env("AWS_EC2_METADATA_DISABLED").value_or(""), "true")) {
    walk->reasons.push_back("IMDS: disabled by AWS_EC2_METADATA_DISABLED");
    finish(self, ctx, no_credentials(walk->reasons));
    return;
  }
  fetch_imds_token(self, ctx, walk);
}

} // namespace

aws_credentials_actor::behavior_type aws_credentials_provider(
  aws_credentials_actor::stateful_pointer<aws_credentials_provider_state> self,
  env_lookup env, http_actor http, aws_credentials_options opts) {
  auto ctx = std::make_shared<const chain_context>(
    chain_context{std::move(env), std::move(http), std::move(opts)});
  return {
    [=](atom::credentials) -> caf::result<aws_credentials> {
      auto& st = self->state;
      if (usable(st, now(self)))
        return *st.current;
      auto rp = self->make_response_promise<aws_credentials>();
      st.waiters.push_back(rp);
      if (!st.resolving)
        resolve(self, ctx);
      return rp;
    },
    [=](atom::refresh) {
      auto& st = self->state;
      // A timer armed for credentials replaced since is stale: ignore it.
      if (st.resolving || st.refresh_at == caf::timespan{0}
          || now(self) < st.refresh_at)
        return;
      st.refresh_at = caf::timespan{0};
      resolve(self, ctx);
    },
  };
}

} // namespace ghscale
