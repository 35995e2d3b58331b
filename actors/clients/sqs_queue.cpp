#include "actors/clients/sqs_queue.hpp"

#include "actors/clock.hpp"
#include "transport/sqs_protocol.hpp"
#include "transport/wall_clock.hpp"

#include <algorithm>
#include <memory>
#include <utility>

namespace ghscale {

namespace {

using queue_ptr = queue_actor::stateful_pointer<sqs_queue_state>;

std::string what(queue_ptr self, const char* action) {
  return std::string{"SQS "} + action + " on " + self->state.queue.url;
}

/// The results of one batch operation's calls, merged as they arrive.
struct batch_fan_in {
  caf::typed_response_promise<batch_result> promise;
  std::vector<std::string> names; // what each entry is reported as
  batch_result merged;
  size_t calls = 0;
  size_t open_calls = 0;
  size_t failed_calls = 0;
  caf::error last_error;
};

/// Every entry of a call that failed as a whole failed with its error.
void fail_entries(batch_fan_in& acc, size_t first, size_t count,
                  const caf::error& err) {
  auto code = err.category() == caf::atom("ghscale")
                ? to_string(static_cast<errc>(err.code()))
                : std::string{"transport"};
  for (auto i = first; i < first + count; ++i)
    acc.merged.failed.push_back({acc.names[i], code, describe(err)});
  ++acc.failed_calls;
  acc.last_error = err;
}

void settle_call(const std::shared_ptr<batch_fan_in>& acc) {
  if (--acc->open_calls > 0)
    return;
  if (acc->failed_calls == acc->calls)
    acc->promise.deliver(acc->last_error);
  else
    acc->promise.deliver(std::move(acc->merged));
}

/// Sends `entries` in calls of at most 10 (each built by `build(first)`) and
/// answers with the merged per-entry results; an error only if every call
/// failed.
template <class Build>
caf::result<batch_result> batch_calls(queue_ptr self, const char* action,
                                      std::vector<std::string> names,
                                      Build build) {
  if (names.empty())
    return batch_result{};
  auto acc = std::make_shared<batch_fan_in>();
  acc->promise = self->make_response_promise<batch_result>();
  acc->names = std::move(names);
  auto context = what(self, action);
  for (size_t first = 0; first < acc->names.size(); first += sqs_max_batch) {
    auto count = std::min(sqs_max_batch, acc->names.size() - first);
    ++acc->calls;
    ++acc->open_calls;
    call_aws(self, self->state.caller, self->state.opts,
             aws_api_call{action, context, build(first)},
             [=](caf::expected<http_response> answer) {
               auto result = call_error(answer, context);
               if (!result) {
                 auto parsed = parse_sqs_batch(answer->body.value, acc->names,
                                               first, count, context);
                 if (parsed) {
                   auto& merged = acc->merged;
                   merged.succeeded.insert(merged.succeeded.end(),
                                           parsed->succeeded.begin(),
                                           parsed->succeeded.end());
                   merged.failed.insert(merged.failed.end(),
                                        parsed->failed.begin(),
                                        parsed->failed.end());
                 } else {
                   result = std::move(parsed.error());
                 }
               }
               if (result)
                 fail_entries(*acc, first, count, result);
               settle_call(acc);
             });
  }
  return acc->promise;
}

} // namespace

queue_actor::behavior_type
sqs_queue(queue_actor::stateful_pointer<sqs_queue_state> self, queue_config q,
          aws_endpoint ep, aws_credentials_actor creds, http_actor http,
          aws_call_options opts, metrics_ptr stats, uint64_t seed) {
  auto& st = self->state;
  st.caller = self->spawn<caf::linked>(aws_caller, ep.scope, std::move(creds),
                                       std::move(http), opts,
                                       std::map<std::string, bucket_spec>{},
                                       std::move(stats), seed);
  st.queue = std::move(q);
  st.endpoint = std::move(ep);
  st.opts = opts;
  return {
    [=](atom::receive, const receive_request& req) -> caf::result<received_batch> {
      auto& st = self->state;
      auto promise = self->make_response_promise<received_batch>();
      auto context = what(self, "ReceiveMessage");
      auto call = sqs_receive(st.endpoint, st.queue.url, req, st.opts.call_timeout);
      call_aws(self, st.caller, st.opts, aws_api_call{"ReceiveMessage", context, call},
               [=](caf::expected<http_response> answer) mutable {
                 clock_bridge clocks{wall_now(), now(self)};
                 deliver_parsed(promise, answer, context, [&](const std::string& body) {
                   return parse_sqs_receive(body, clocks, context);
                 });
               });
      return promise;
    },
    [=](atom::remove, std::vector<std::string>& receipts) {
      auto entries = std::make_shared<std::vector<std::string>>(receipts);
      return batch_calls(self, "DeleteMessageBatch", std::move(receipts),
                         [=](size_t first) {
                           return sqs_delete_batch(self->state.endpoint,
                                                   self->state.queue.url, *entries,
                                                   first, self->state.opts.call_timeout);
                         });
    },
    [=](atom::visibility, std::vector<visibility_change>& changes) {
      std::vector<std::string> names;
      for (auto& change : changes)
        names.push_back(change.receipt);
      auto entries = std::make_shared<std::vector<visibility_change>>(std::move(changes));
      return batch_calls(self, "ChangeMessageVisibilityBatch", std::move(names),
                         [=](size_t first) {
                           return sqs_visibility_batch(self->state.endpoint,
                                                       self->state.queue.url,
                                                       *entries, first,
                                                       self->state.opts.call_timeout);
                         });
    },
    [=](atom::enqueue, std::vector<outgoing_message>& messages) {
      std::vector<std::string> names;
      for (size_t i = 0; i < messages.size(); ++i)
        names.push_back(std::to_string(i));
      auto entries = std::make_shared<std::vector<outgoing_message>>(std::move(messages));
      return batch_calls(self, "SendMessageBatch", std::move(names),
                         [=](size_t first) {
                           return sqs_send_batch(self->state.endpoint,
                                                 self->state.queue.url, *entries,
                                                 first, self->state.opts.call_timeout);
                         });
    },
    [=](atom::depth) -> caf::result<queue_depth> {
      auto& st = self->state;
      auto promise = self->make_response_promise<queue_depth>();
      auto context = what(self, "GetQueueAttributes");
      auto call = sqs_queue_attributes(st.endpoint, st.queue.url, st.opts.call_timeout);
      call_aws(self, st.caller, st.opts,
               aws_api_call{"GetQueueAttributes", context, call},
               [=](caf::expected<http_response> answer) mutable {
                 deliver_parsed(promise, answer, context, [&](const std::string& body) {
                   return parse_sqs_depth(body, context);
                 });
               });
      return promise;
    },
  };
}

} // namespace ghscale
