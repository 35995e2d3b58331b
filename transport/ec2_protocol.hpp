#pragma once
// EC2 on the query protocol (form-encoded POST, Version 2016-11-15, XML
// answers). Builders make unsigned requests; parsers read 2xx answer bodies
// (error answers go through aws_protocol's parse_aws_error).
#include "messages/types.hpp"
#include "transport/aws_protocol.hpp"
#include "transport/wall_clock.hpp"

#include <caf/expected.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace ghscale {

/// CreateFleet, type instant: one launch template config (a template name,
/// or an id "lt-..."; its default version), overrides instance types x
/// subnets, the capacity type with its allocation strategy, the request's
/// tags on the instances, and its ClientToken (so a retry never launches
/// twice).
http_request ec2_create_fleet(const aws_endpoint& ep, const fleet_request& req,
                              caf::timespan timeout);
/// The instances that came up and the errorSet; an entry without a
/// lifecycle has the requested capacity type.
caf::expected<fleet_result> parse_create_fleet(std::string_view body,
                                               const fleet_request& req,
                                               const std::string& what);

/// One page of DescribeInstances.
struct instance_page {
  std::vector<instance_info> instances;
  std::string next_token; // empty on the last page
};
/// DescribeInstances filtered by tags (and by live states unless
/// `include_terminated`), the page after `next_token` ("" for the first).
http_request ec2_describe_instances(const aws_endpoint& ep,
                                    const instance_filter& filter,
                                    const std::string& next_token,
                                    caf::timespan timeout);
/// One page; launch times are converted to the actor clock with `clocks`.
caf::expected<instance_page> parse_describe_instances(std::string_view body,
                                                      const clock_bridge& clocks,
                                                      const std::string& what);

/// TerminateInstances for `ids`.
http_request ec2_terminate_instances(const aws_endpoint& ep,
                                     const std::vector<std::string>& ids,
                                     caf::timespan timeout);
/// Instances in the answer succeeded; any other of `ids` failed.
caf::expected<batch_result> parse_terminate_instances(
  std::string_view body, const std::vector<std::string>& ids,
  const std::string& what);
/// Which of `ids` an error message names (InvalidInstanceID.NotFound lists
/// the unknown ones), so the others can be retried alone.
std::vector<std::string> instance_ids_named_in(const std::string& message,
                                               const std::vector<std::string>& ids);

/// CreateTags: `tags` on every resource of `resource_ids`.
http_request ec2_create_tags(const aws_endpoint& ep,
                             const std::vector<std::string>& resource_ids,
                             const std::vector<tag>& tags, caf::timespan timeout);

} // namespace ghscale
