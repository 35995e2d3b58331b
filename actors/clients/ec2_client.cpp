#include "actors/clients/ec2_client.hpp"

#include "actors/clock.hpp"
#include "actors/ops/log.hpp"
#include "transport/ec2_protocol.hpp"
#include "transport/wall_clock.hpp"

#include <algorithm>
#include <functional>
#include <memory>
#include <utility>

namespace ghscale {

namespace {

using ec2_ptr = ec2_actor::stateful_pointer<ec2_client_state>;

/// A bound on DescribeInstances pages (1000 instances each), so that a
/// service repeating a NextToken cannot keep us paging forever.
constexpr int32_t max_describe_pages = 1000;

std::string what(ec2_ptr self, const char* action) {
  return std::string{"EC2 "} + action + " on " + self->state.endpoint.url;
}

void call(ec2_ptr self, const char* api, std::string context, http_request req,
          std::function<void(caf::expected<http_response>)> on_answer) {
  call_aws(self, self->state.caller, self->state.opts,
           aws_api_call{api, std::move(context), std::move(req)},
           std::move(on_answer));
}

struct describe_job {
  instance_filter filter;
  instance_list found;
  int32_t pages = 0;
  caf::typed_response_promise<instance_list> promise;
};

void describe_page(ec2_ptr self, std::shared_ptr<describe_job> job,
                   std::string next_token) {
  auto context = what(self, "DescribeInstances");
  auto req = ec2_describe_instances(self->state.endpoint, job->filter, next_token,
                                    self->state.opts.call_timeout);
  call(self, "DescribeInstances", context, std::move(req),
       [=](caf::expected<http_response> answer) {
         if (auto err = call_error(answer, context)) {
           job->promise.deliver(std::move(err));
           return;
         }
         clock_bridge clocks{wall_now(), now(self)};
         auto page = parse_describe_instances(answer->body.value, clocks, context);
         if (!page) {
           job->promise.deliver(std::move(page.error()));
           return;
         }
         auto& found = job->found.instances;
         std::move(page->instances.begin(), page->instances.end(),
                   std::back_inserter(found));
         if (page->next_token.empty()) {
           job->promise.deliver(std::move(job->found));
         } else if (++job->pages >= max_describe_pages) {
           job->promise.deliver(caf::make_error(
             errc::backend_failure, context + ": more than "
                                      + std::to_string(max_describe_pages)
                                      + " pages"));
         } else {
           describe_page(self, job, std::move(page->next_token));
         }
       });
}

struct terminate_job {
  batch_result result;
  caf::typed_response_promise<batch_result> promise;
};

/// Terminates `ids`. When EC2 refuses the whole call because some ids do
/// not exist (InvalidInstanceID.NotFound names them), those fail and the
/// others are terminated in one more call.
void terminate(ec2_ptr self, std::shared_ptr<terminate_job> job,
               std::vector<std::string> ids, bool may_split) {
  auto context = what(self, "TerminateInstances");
  auto req = ec2_terminate_instances(self->state.endpoint, ids,
                                     self->state.opts.call_timeout);
  call(self, "TerminateInstances", context, std::move(req),
       [=](caf::expected<http_response> answer) mutable {
         auto& result = job->result;
         auto aws_err = answer ? parse_aws_error(*answer) : std::nullopt;
         if (aws_err && aws_err->code == "InvalidInstanceID.NotFound" && may_split) {
           auto unknown = instance_ids_named_in(aws_err->message, ids);
           if (!unknown.empty()) {
             for (auto& id : unknown)
               result.failed.push_back({id, aws_err->code, aws_err->message});
             ids.erase(std::remove_if(ids.begin(), ids.end(),
                                      [&](const std::string& id) {
                                        return std::count(unknown.begin(),
                                                          unknown.end(), id)
                                               > 0;
                                      }),
                       ids.end());
             if (ids.empty())
               job->promise.deliver(std::move(result));
             else
               terminate(self, job, std::move(ids), false);
             return;
           }
         }
         if (auto err = call_error(answer, context)) {
           job->promise.deliver(std::move(err));
           return;
         }
         auto parsed = parse_terminate_instances(answer->body.value, ids, context);
         if (!parsed) {
           job->promise.deliver(std::move(parsed.error()));
           return;
         }
         result.succeeded.insert(result.succeeded.end(), parsed->succeeded.begin(),
                                 parsed->succeeded.end());
         result.failed.insert(result.failed.end(), parsed->failed.begin(),
                              parsed->failed.end());
         job->promise.deliver(std::move(result));
       });
}

} // namespace

ec2_actor::behavior_type
ec2_client(ec2_actor::stateful_pointer<ec2_client_state> self, aws_endpoint ep,
           aws_credentials_actor creds, http_actor http, aws_call_options opts,
           metrics_ptr stats, uint64_t seed) {
  auto& st = self->state;
  st.caller = self->spawn<caf::linked>(aws_caller, ep.scope, std::move(creds),
                                       std::move(http), opts, ec2_request_buckets(),
                                       std::move(stats), seed);
  st.endpoint = std::move(ep);
  st.opts = opts;
  return {
    [=](atom::fleet, const fleet_request& req) -> caf::result<fleet_result> {
      auto context = what(self, "CreateFleet");
      if (req.count <= 0)
        return caf::make_error(errc::rejected, context + ": no instances requested");
      auto promise = self->make_response_promise<fleet_result>();
      log::info("create fleet", {{"client_token", req.client_token},
                                 {"count", req.count},
                                 {"capacity", to_string(req.capacity)}});
      call(self, "CreateFleet", context,
           ec2_create_fleet(self->state.endpoint, req, self->state.opts.call_timeout),
           [=](caf::expected<http_response> answer) mutable {
             deliver_parsed(promise, answer, context, [&](const std::string& body) {
               return parse_create_fleet(body, req, context);
             });
           });
      return promise;
    },
    [=](atom::describe, instance_filter& filter) -> caf::result<instance_list> {
      auto job = std::make_shared<describe_job>();
      job->filter = std::move(filter);
      job->promise = self->make_response_promise<instance_list>();
      describe_page(self, job, "");
      return job->promise;
    },
    [=](atom::add_tags, const instance_tags& req) -> caf::result<batch_result> {
      if (req.ids.empty())
        return batch_result{};
      auto context = what(self, "CreateTags");
      auto promise = self->make_response_promise<batch_result>();
      call(self, "CreateTags", context,
           ec2_create_tags(self->state.endpoint, req.ids, req.tags,
                           self->state.opts.call_timeout),
           [=](caf::expected<http_response> answer) mutable {
             // CreateTags is all or nothing: its answer is only "true".
             if (auto err = call_error(answer, context))
               promise.deliver(std::move(err));
             else
               promise.deliver(batch_result{req.ids, {}});
           });
      return promise;
    },
    [=](atom::terminate, instance_ids& ids) -> caf::result<batch_result> {
      if (ids.ids.empty())
        return batch_result{};
      auto job = std::make_shared<terminate_job>();
      job->promise = self->make_response_promise<batch_result>();
      terminate(self, job, std::move(ids.ids), true);
      return job->promise;
    },
  };
}

} // namespace ghscale
