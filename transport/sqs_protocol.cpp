#include "transport/sqs_protocol.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <functional>

namespace ghscale {

namespace {

using json_writer = rapidjson::Writer<rapidjson::StringBuffer>;

constexpr std::string_view sqs_json_version = "1.0";
constexpr int64_t max_wait_seconds = 20;
constexpr int64_t max_visibility_seconds = 12 * 3600;
constexpr int64_t max_delay_seconds = 15 * 60;

int64_t whole_seconds(caf::timespan d, int64_t max) {
  auto s = std::chrono::duration_cast<std::chrono::seconds>(d).count();
  return std::clamp<int64_t>(s, 0, max);
}

void key(json_writer& w, const char* name) {
  w.Key(name);
}

void string(json_writer& w, const std::string& value) {
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

void string_list(json_writer& w, const char* name,
                 std::initializer_list<const char*> values) {
  key(w, name);
  w.StartArray();
  for (auto value : values)
    w.String(value);
  w.EndArray();
}

/// One call: {"QueueUrl": ..., <members written by `body`>}.
http_request sqs_call(const aws_endpoint& ep, const char* action,
                      const std::string& queue_url, caf::timespan timeout,
                      const std::function<void(json_writer&)>& body) {
  rapidjson::StringBuffer buf;
  json_writer w{buf};
  w.StartObject();
  key(w, "QueueUrl");
  string(w, queue_url);
  body(w);
  w.EndObject();
  return aws_json_request(ep, sqs_json_version, std::string{"AmazonSQS."} + action,
                          std::string{buf.GetString(), buf.GetSize()}, timeout);
}

/// {"Entries": [{"Id": "<index>", ...}, ...]} for entries [first, first+10).
template <class T, class WriteEntry>
http_request sqs_batch_call(const aws_endpoint& ep, const char* action,
                            const std::string& queue_url, const std::vector<T>& xs,
                            size_t first, caf::timespan timeout,
                            WriteEntry write_entry) {
  auto last = std::min(xs.size(), first + sqs_max_batch);
  return sqs_call(ep, action, queue_url, timeout, [&](json_writer& w) {
    key(w, "Entries");
    w.StartArray();
    for (auto i = first; i < last; ++i) {
      w.StartObject();
      key(w, "Id");
      string(w, std::to_string(i));
      write_entry(w, xs[i]);
      w.EndObject();
    }
    w.EndArray();
  });
}

const rapidjson::Value* member(const rapidjson::Value& obj, const char* name) {
  auto i = obj.FindMember(name);
  return i == obj.MemberEnd() ? nullptr : &i->value;
}

/// SQS writes numbers in attribute maps as strings.
int64_t number_attribute(const rapidjson::Value* attrs, const char* name,
                         int64_t fallback) {
  if (attrs == nullptr || !attrs->IsObject())
    return fallback;
  auto value = json_string(*attrs, name);
  if (value.empty())
    return fallback;
  char* end = nullptr;
  auto n = std::strtoll(value.c_str(), &end, 10);
  return *end == '\0' ? n : fallback;
}

/// The array under `name`, or an empty one if the answer leaves it out.
const rapidjson::Value& array_member(const rapidjson::Value& obj, const char* name) {
  static const rapidjson::Value empty_array{rapidjson::kArrayType};
  auto x = member(obj, name);
  return x != nullptr && x->IsArray() ? *x : empty_array;
}

} // namespace

http_request sqs_receive(const aws_endpoint& ep, const std::string& queue_url,
                         const receive_request& req, caf::timespan call_timeout) {
  auto wait = whole_seconds(req.wait, max_wait_seconds);
  auto max = std::clamp<int32_t>(req.max_messages, 1, sqs_max_batch);
  auto visibility = whole_seconds(req.visibility, max_visibility_seconds);
  return sqs_call(ep, "ReceiveMessage", queue_url,
                  std::chrono::seconds{wait} + call_timeout, [&](json_writer& w) {
                    key(w, "MaxNumberOfMessages");
                    w.Int(max);
                    key(w, "WaitTimeSeconds");
                    w.Int64(wait);
                    key(w, "VisibilityTimeout");
                    w.Int64(visibility);
                    // The newer name and the deprecated one: SQS and moto
                    // versions differ in which they read.
                    for (auto name : {"MessageSystemAttributeNames", "AttributeNames"})
                      string_list(w, name, {"ApproximateReceiveCount", "SentTimestamp"});
                    string_list(w, "MessageAttributeNames", {"All"});
                  });
}

caf::expected<received_batch> parse_sqs_receive(std::string_view body,
                                                const clock_bridge& clocks,
                                                const std::string& what) {
  rapidjson::Document doc;
  if (auto err = parse_json_body(body, what, doc))
    return err;
  received_batch batch;
  for (auto& m : array_member(doc, "Messages").GetArray()) {
    if (!m.IsObject())
      return malformed_answer(what, "a message is not an object");
    queue_message msg;
    msg.message_id = json_string(m, "MessageId");
    msg.receipt = json_string(m, "ReceiptHandle");
    msg.body = json_string(m, "Body");
    if (msg.receipt.empty())
      return malformed_answer(what, "message " + msg.message_id
                                      + " has no ReceiptHandle");
    auto attrs = member(m, "Attributes");
    msg.receive_count
      = static_cast<int32_t>(number_attribute(attrs, "ApproximateReceiveCount", 1));
    auto sent_ms = number_attribute(attrs, "SentTimestamp", 0);
    if (sent_ms > 0)
      msg.sent_at = clocks.to_actor(clamped<std::chrono::milliseconds>(sent_ms));
    if (auto custom = member(m, "MessageAttributes"); custom && custom->IsObject())
      for (auto& attr : custom->GetObject())
        if (attr.value.IsObject() && json_string(attr.value, "DataType") == "String")
          msg.attributes[attr.name.GetString()] = json_string(attr.value, "StringValue");
    batch.messages.push_back(std::move(msg));
  }
  return batch;
}

http_request sqs_delete_batch(const aws_endpoint& ep, const std::string& queue_url,
                              const std::vector<std::string>& receipts,
                              size_t first, caf::timespan timeout) {
  return sqs_batch_call(ep, "DeleteMessageBatch", queue_url, receipts, first,
                        timeout, [](json_writer& w, const std::string& receipt) {
                          key(w, "ReceiptHandle");
                          string(w, receipt);
                        });
}

http_request sqs_visibility_batch(const aws_endpoint& ep,
                                  const std::string& queue_url,
                                  const std::vector<visibility_change>& changes,
                                  size_t first, caf::timespan timeout) {
  return sqs_batch_call(ep, "ChangeMessageVisibilityBatch", queue_url, changes,
                        first, timeout,
                        [](json_writer& w, const visibility_change& change) {
                          key(w, "ReceiptHandle");
                          string(w, change.receipt);
                          key(w, "VisibilityTimeout");
                          w.Int64(whole_seconds(change.delay, max_visibility_seconds));
                        });
}

http_request sqs_send_batch(const aws_endpoint& ep, const std::string& queue_url,
                            const std::vector<outgoing_message>& messages,
                            size_t first, caf::timespan timeout) {
  return sqs_batch_call(ep, "SendMessageBatch", queue_url, messages, first,
                        timeout, [](json_writer& w, const outgoing_message& msg) {
                          key(w, "MessageBody");
                          string(w, msg.body);
                          key(w, "DelaySeconds");
                          w.Int64(whole_seconds(msg.delay, max_delay_seconds));
                          if (msg.attributes.empty())
                            return;
                          key(w, "MessageAttributes");
                          w.StartObject();
                          for (auto& [name, value] : msg.attributes) {
                            if (value.empty())
                              continue; // SQS refuses an empty StringValue
                            w.Key(name.data(),
                                  static_cast<rapidjson::SizeType>(name.size()));
                            w.StartObject();
                            key(w, "DataType");
                            w.String("String");
                            key(w, "StringValue");
                            string(w, value);
                            w.EndObject();
                          }
                          w.EndObject();
                        });
}

caf::expected<batch_result> parse_sqs_batch(std::string_view body,
                                            const std::vector<std::string>& names,
                                            size_t first, size_t count,
                                            const std::string& what) {
  rapidjson::Document doc;
  if (auto err = parse_json_body(body, what, doc))
    return err;
  std::vector<bool> reported(count, false);
  // The entry index an answer's Id names, if it is one of this call's.
  auto entry_of = [&](const rapidjson::Value& entry) -> caf::expected<size_t> {
    auto id = entry.IsObject() ? json_string(entry, "Id") : std::string{};
    char* end = nullptr;
    auto index = std::strtoull(id.c_str(), &end, 10);
    if (id.empty() || *end != '\0' || index < first || index >= first + count
        || reported[index - first])
      return malformed_answer(what, "unexpected entry Id '" + id.substr(0, 16) + "'");
    reported[index - first] = true;
    return static_cast<size_t>(index);
  };
  batch_result result;
  for (auto& entry : array_member(doc, "Successful").GetArray()) {
    auto index = entry_of(entry);
    if (!index)
      return std::move(index.error());
    result.succeeded.push_back(names[*index]);
  }
  for (auto& entry : array_member(doc, "Failed").GetArray()) {
    auto index = entry_of(entry);
    if (!index)
      return std::move(index.error());
    result.failed.push_back({names[*index], json_string(entry, "Code"), json_string(entry, "Message")});
  }
  for (size_t i = 0; i < count; ++i)
    if (!reported[i])
      result.failed.push_back({names[first + i], "NoResult",
                               "the batch answer does not mention this entry"});
  return result;
}

http_request sqs_queue_attributes(const aws_endpoint& ep,
                                  const std::string& queue_url,
                                  caf::timespan timeout) {
  return sqs_call(ep, "GetQueueAttributes", queue_url, timeout, [](json_writer& w) {
    string_list(w, "AttributeNames",
                {"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible",
                 "ApproximateNumberOfMessagesDelayed"});
  });
}

caf::expected<queue_depth> parse_sqs_depth(std::string_view body,
                                           const std::string& what) {
  rapidjson::Document doc;
  if (auto err = parse_json_body(body, what, doc))
    return err;
  auto attrs = member(doc, "Attributes");
  if (attrs == nullptr || !attrs->IsObject())
    return malformed_answer(what, "no Attributes");
  queue_depth depth;
  depth.visible = number_attribute(attrs, "ApproximateNumberOfMessages", 0);
  depth.in_flight = number_attribute(attrs, "ApproximateNumberOfMessagesNotVisible", 0);
  depth.delayed = number_attribute(attrs, "ApproximateNumberOfMessagesDelayed", 0);
  return depth;
}

} // namespace ghscale
