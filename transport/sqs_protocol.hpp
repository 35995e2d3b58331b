#pragma once
// SQS on the AWS JSON 1.0 protocol (POST to the service endpoint,
// X-Amz-Target AmazonSQS.<Action>, the queue named by QueueUrl in the body).
// Builders make unsigned requests; parsers read 2xx answer bodies (error
// answers go through aws_protocol's parse_aws_error). Batch entry Ids are the
// entries' indexes in the caller's vector, so answers map back exactly.
#include "messages/types.hpp"
#include "transport/aws_protocol.hpp"
#include "transport/wall_clock.hpp"

#include <caf/expected.hpp>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace ghscale {

/// SQS takes at most 10 entries per batch call and per receive.
constexpr size_t sqs_max_batch = 10;

/// ReceiveMessage with ApproximateReceiveCount and SentTimestamp; the HTTP
/// exchange may take the long poll's wait plus `call_timeout`.
http_request sqs_receive(const aws_endpoint& ep, const std::string& queue_url,
                         const receive_request& req, caf::timespan call_timeout);
/// The messages of a ReceiveMessage answer; `sent_at` on the actor clock.
caf::expected<received_batch> parse_sqs_receive(std::string_view body,
                                                const clock_bridge& clocks,
                                                const std::string& what);

/// DeleteMessageBatch for receipts [first, first + 10).
http_request sqs_delete_batch(const aws_endpoint& ep, const std::string& queue_url,
                              const std::vector<std::string>& receipts,
                              size_t first, caf::timespan timeout);
/// ChangeMessageVisibilityBatch for changes [first, first + 10).
http_request sqs_visibility_batch(const aws_endpoint& ep,
                                  const std::string& queue_url,
                                  const std::vector<visibility_change>& changes,
                                  size_t first, caf::timespan timeout);
/// SendMessageBatch for messages [first, first + 10).
http_request sqs_send_batch(const aws_endpoint& ep, const std::string& queue_url,
                            const std::vector<outgoing_message>& messages,
                            size_t first, caf::timespan timeout);
/// Entries [first, first + count) of a batch answer, reported under
/// `names[index]` (the receipt, or the index for sends). An entry the answer
/// does not mention failed.
caf::expected<batch_result> parse_sqs_batch(std::string_view body,
                                            const std::vector<std::string>& names,
                                            size_t first, size_t count,
                                            const std::string& what);

/// GetQueueAttributes for the three ApproximateNumberOfMessages* counts.
http_request sqs_queue_attributes(const aws_endpoint& ep,
                                  const std::string& queue_url,
                                  caf::timespan timeout);
caf::expected<queue_depth> parse_sqs_depth(std::string_view body,
                                           const std::string& what);

} // namespace ghscale
