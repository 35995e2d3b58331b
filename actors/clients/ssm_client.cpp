#include "actors/clients/ssm_client.hpp"

#include "transport/ssm_protocol.hpp"

#include <utility>

namespace ghscale {

namespace {

using ssm_ptr = ssm_client_actor::stateful_pointer<ssm_client_state>;

std::string what(ssm_ptr self, const char* action, const std::string& name) {
  return std::string{"SSM "} + action + " of " + name + " on "
         + self->state.endpoint.url;
}

/// Sends `req` and answers `promise` with the parameter's name once the call
/// succeeded, or when `done_anyway` says its error means the same.
template <class DoneAnyway>
caf::result<std::string> name_call(ssm_ptr self, const char* action,
                                   const std::string& name, http_request req,
                                   DoneAnyway done_anyway) {
  auto promise = self->make_response_promise<std::string>();
  auto context = what(self, action, name);
  call_aws(self, self->state.caller, self->state.opts,
           aws_api_call{action, context, std::move(req)},
           [=](caf::expected<http_response> answer) mutable {
             auto aws_err = answer ? parse_aws_error(*answer) : std::nullopt;
             if (aws_err && done_anyway(*aws_err)) {
               promise.deliver(name);
               return;
             }
             if (auto err = call_error(answer, context))
               promise.deliver(std::move(err));
             else
               promise.deliver(name);
           });
  return promise;
}

} // namespace

ssm_client_actor::behavior_type
ssm_client(ssm_client_actor::stateful_pointer<ssm_client_state> self,
           aws_endpoint ep, aws_credentials_actor creds, http_actor http,
           aws_call_options opts, std::string kms_key_id, double throughput,
           metrics_ptr stats, uint64_t seed) {
  auto& st = self->state;
  st.caller = self->spawn<caf::linked>(aws_caller, ep.scope, std::move(creds),
                                       std::move(http), opts, ssm_request_buckets(throughput),
                                       std::move(stats), seed);
  st.endpoint = std::move(ep);
  st.opts = opts;
  st.kms_key_id = std::move(kms_key_id);
  return {
    [=](atom::put_param, const parameter& param) {
      auto& st = self->state;
      return name_call(self, "PutParameter", param.name,
                       ssm_put_parameter(st.endpoint, param, st.kms_key_id,
                                         st.opts.call_timeout),
                       [](const aws_error&) { return false; });
    },
    [=](atom::del_param, const std::string& name) {
      auto& st = self->state;
      return name_call(self, "DeleteParameter", name,
                       ssm_delete_parameter(st.endpoint, name, st.opts.call_timeout),
                       [](const aws_error& err) {
                         return err.code == "ParameterNotFound";
                       });
    },
    [=](atom::get_param, const std::string& name) -> caf::result<secret_string> {
      auto& st = self->state;
      auto promise = self->make_response_promise<secret_string>();
      auto context = what(self, "GetParameter", name);
      call_aws(self, st.caller, st.opts,
               aws_api_call{"GetParameter", context,
                            ssm_get_parameter(st.endpoint, name, st.opts.call_timeout)},
               [=](caf::expected<http_response> answer) mutable {
                 deliver_parsed(promise, answer, context, [&](const std::string& body) {
                   return parse_ssm_parameter_value(body, context);
                 });
               });
      return promise;
    },
  };
}

} // namespace ghscale
