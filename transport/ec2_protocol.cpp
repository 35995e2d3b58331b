#include "transport/ec2_protocol.hpp"

#include <pugixml.hpp>

#include <algorithm>
#include <cctype>

namespace ghscale {

namespace {

const std::string ec2_api_version = "2016-11-15";

/// DescribeInstances pages hold at most 1000 instances.
constexpr const char* describe_page_size = "1000";

std::string nth(const std::string& prefix, size_t index_from_zero) {
  return prefix + "." + std::to_string(index_from_zero + 1);
}

std::string lifecycle_name(capacity_type x) {
  return x == capacity_type::spot ? "spot" : "on-demand";
}

capacity_type capacity_of(std::string_view lifecycle, capacity_type fallback) {
  if (lifecycle == "spot")
    return capacity_type::spot;
  if (lifecycle == "on-demand" || lifecycle == "scheduled")
    return capacity_type::on_demand;
  return fallback;
}

/// Overrides: every instance type in every subnet (or either list alone).
void add_overrides(query_params& params, const std::string& config,
                   const fleet_request& req) {
  std::vector<std::pair<const std::string*, const std::string*>> overrides;
  if (req.instance_types.empty()) {
    for (auto& subnet : req.subnets)
      overrides.emplace_back(nullptr, &subnet);
  } else if (req.subnets.empty()) {
    for (auto& type : req.instance_types)
      overrides.emplace_back(&type, nullptr);
  } else {
    for (auto& type : req.instance_types)
      for (auto& subnet : req.subnets)
        overrides.emplace_back(&type, &subnet);
  }
  for (size_t i = 0; i < overrides.size(); ++i) {
    auto prefix = nth(config + ".Overrides", i);
    if (auto type = overrides[i].first)
      params.emplace_back(prefix + ".InstanceType", *type);
    if (auto subnet = overrides[i].second)
      params.emplace_back(prefix + ".SubnetId", *subnet);
  }
}

void add_tags(query_params& params, const std::string& prefix,
              const std::vector<tag>& tags) {
  for (size_t i = 0; i < tags.size(); ++i) {
    params.emplace_back(nth(prefix, i) + ".Key", tags[i].key);
    params.emplace_back(nth(prefix, i) + ".Value", tags[i].value);
  }
}

caf::expected<pugi::xml_node> answer_root(pugi::xml_document& doc,
                                          std::string_view body,
                                          const std::string& what) {
  auto parsed = doc.load_buffer(body.data(), body.size());
  if (!parsed)
    return malformed_answer(what, std::string{"XML: "} + parsed.description());
  return doc.document_element();
}

/// The overrides an entry of CreateFleet's answer was launched (or failed)
/// with.
pugi::xml_node overrides_of(const pugi::xml_node& item) {
  return item.child("launchTemplateAndOverrides").child("overrides");
}

caf::expected<instance_state> state_of(std::string_view name) {
  if (name == "pending")
    return instance_state::pending;
  if (name == "running")
    return instance_state::running;
  if (name == "shutting-down")
    return instance_state::shutting_down;
  if (name == "terminated")
    return instance_state::terminated;
  if (name == "stopping")
    return instance_state::stopping;
  if (name == "stopped")
    return instance_state::stopped;
  return caf::make_error(errc::backend_failure,
                         "unknown instance state '" + std::string{name} + "'");
}

caf::expected<instance_info> instance_of(const pugi::xml_node& item,
                                         const clock_bridge& clocks,
                                         const std::string& what) {
  instance_info info;
  info.instance_id = item.child_value("instanceId");
  info.instance_type = item.child_value("instanceType");
  auto state = state_of(item.child("instanceState").child_value("name"));
  if (!state)
    return malformed_answer(what, describe(state.error()) + " of "
                                    + info.instance_id);
  info.state = *state;
  info.capacity = capacity_of(item.child_value("instanceLifecycle"),
                              capacity_type::on_demand);
  if (auto launched = parse_rfc3339(item.child_value("launchTime")))
    info.launched_at = clocks.to_actor(*launched);
  else
    return malformed_answer(what, "launchTime of " + info.instance_id + ": "
                                    + describe(launched.error()));
  for (auto& t : item.child("tagSet").children("item"))
    info.tags.push_back({t.child_value("key"), t.child_value("value")});
  return info;
}

bool is_id_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '-';
}

/// A launch template id is "lt-" and hex digits (EC2's are 17); anything
/// else, "lt-ghscale-linux" included, is a name.
bool is_launch_template_id(const std::string& x) {
  return x.size() > 3 && x.rfind("lt-", 0) == 0
         && std::all_of(x.begin() + 3, x.end(),
                        [](char c) { return std::isxdigit(static_cast<unsigned char>(c)) != 0; });
}

} // namespace

http_request ec2_create_fleet(const aws_endpoint& ep, const fleet_request& req,
                              caf::timespan timeout) {
  const std::string config = "LaunchTemplateConfigs.1";
  const std::string spec = config + ".LaunchTemplateSpecification";
  auto by_id = is_launch_template_id(req.launch_template);
  query_params params{
    {"Type", "instant"},
    {"ClientToken", req.client_token},
    {spec + (by_id ? ".LaunchTemplateId" : ".LaunchTemplateName"),
     req.launch_template},
    {spec + ".Version", "$Default"},
  };
  add_overrides(params, config, req);
  params.emplace_back("TargetCapacitySpecification.TotalTargetCapacity",
                      std::to_string(req.count));
  params.emplace_back("TargetCapacitySpecification.DefaultTargetCapacityType",
                      lifecycle_name(req.capacity));
  if (req.capacity == capacity_type::spot)
    params.emplace_back("SpotOptions.AllocationStrategy", "price-capacity-optimized");
  else
    params.emplace_back("OnDemandOptions.AllocationStrategy", "lowest-price");
  if (!req.tags.empty()) {
    // CreateFleet tags only fleets and instances; volume tags belong in the
    // launch template.
    params.emplace_back("TagSpecification.1.ResourceType", "instance");
    add_tags(params, "TagSpecification.1.Tag", req.tags);
  }
  return aws_query_request(ep, "CreateFleet", ec2_api_version, std::move(params),
                           timeout);
}

caf::expected<fleet_result> parse_create_fleet(std::string_view body,
                                               const fleet_request& req,
                                               const std::string& what) {
  pugi::xml_document doc;
  auto root = answer_root(doc, body, what);
  if (!root)
    return std::move(root.error());
  fleet_result result;
  for (auto& item : root->child("fleetInstanceSet").children("item")) {
    auto overrides = overrides_of(item);
    std::string type = item.child_value("instanceType");
    if (type.empty())
      type = overrides.child_value("instanceType");
    std::string subnet = overrides.child_value("subnetId");
    auto capacity = capacity_of(item.child_value("lifecycle"), req.capacity);
    for (auto& id : item.child("instanceIds").children("item"))
      result.instances.push_back({id.text().get(), type, subnet, capacity});
  }
  for (auto& item : root->child("errorSet").children("item")) {
    auto overrides = overrides_of(item);
    result.errors.push_back({item.child_value("errorCode"),
                             item.child_value("errorMessage"),
                             overrides.child_value("instanceType"),
                             overrides.child_value("subnetId"),
                             capacity_of(item.child_value("lifecycle"), req.capacity)});
  }
  return result;
}

http_request ec2_describe_instances(const aws_endpoint& ep,
                                    const instance_filter& filter,
                                    const std::string& next_token,
                                    caf::timespan timeout) {
  query_params params;
  size_t n = 0;
  for (auto& t : filter.tags) {
    auto prefix = nth("Filter", n++);
    params.emplace_back(prefix + ".Name", "tag:" + t.key);
    params.emplace_back(prefix + ".Value.1", t.value);
  }
  if (!filter.include_terminated) {
    auto prefix = nth("Filter", n++);
    params.emplace_back(prefix + ".Name", "instance-state-name");
    size_t v = 0;
    for (auto state : {"pending", "running", "shutting-down", "stopping", "stopped"})
      params.emplace_back(nth(prefix + ".Value", v++), state);
  }
  params.emplace_back("MaxResults", describe_page_size);
  if (!next_token.empty())
    params.emplace_back("NextToken", next_token);
  return aws_query_request(ep, "DescribeInstances", ec2_api_version,
                           std::move(params), timeout);
}

caf::expected<instance_page> parse_describe_instances(std::string_view body,
                                                      const clock_bridge& clocks,
                                                      const std::string& what) {
  pugi::xml_document doc;
  auto root = answer_root(doc, body, what);
  if (!root)
    return std::move(root.error());
  instance_page page;
  for (auto& reservation : root->child("reservationSet").children("item"))
    for (auto& item : reservation.child("instancesSet").children("item")) {
      auto info = instance_of(item, clocks, what);
      if (!info)
        return std::move(info.error());
      page.instances.push_back(std::move(*info));
    }
  page.next_token = root->child_value("nextToken");
  return page;
}

http_request ec2_terminate_instances(const aws_endpoint& ep,
                                     const std::vector<std::string>& ids,
                                     caf::timespan timeout) {
  query_params params;
  for (size_t i = 0; i < ids.size(); ++i)
    params.emplace_back(nth("InstanceId", i), ids[i]);
  return aws_query_request(ep, "TerminateInstances", ec2_api_version,
                           std::move(params), timeout);
}

caf::expected<batch_result> parse_terminate_instances(
  std::string_view body, const std::vector<std::string>& ids,
  const std::string& what) {
  pugi::xml_document doc;
  auto root = answer_root(doc, body, what);
  if (!root)
    return std::move(root.error());
  std::vector<std::string> terminating;
  for (auto& item : root->child("instancesSet").children("item"))
    terminating.emplace_back(item.child_value("instanceId"));
  batch_result result;
  for (auto& id : ids) {
    if (std::find(terminating.begin(), terminating.end(), id) != terminating.end())
      result.succeeded.push_back(id);
    else
      result.failed.push_back({id, "NotTerminated",
                               "the answer does not list this instance"});
  }
  return result;
}

std::vector<std::string> instance_ids_named_in(const std::string& message,
                                               const std::vector<std::string>& ids) {
  std::vector<std::string> named;
  for (auto& id : ids) {
    for (auto pos = message.find(id); pos != std::string::npos;
         pos = message.find(id, pos + 1)) {
      auto end = pos + id.size();
      bool whole = (pos == 0 || !is_id_char(message[pos - 1]))
                   && (end == message.size() || !is_id_char(message[end]));
      if (whole) {
        named.push_back(id);
        break;
      }
    }
  }
  return named;
}

http_request ec2_create_tags(const aws_endpoint& ep,
                             const std::vector<std::string>& resource_ids,
                             const std::vector<tag>& tags, caf::timespan timeout) {
  query_params params;
  for (size_t i = 0; i < resource_ids.size(); ++i)
    params.emplace_back(nth("ResourceId", i), resource_ids[i]);
  add_tags(params, "Tag", tags);
  return aws_query_request(ep, "CreateTags", ec2_api_version, std::move(params),
                           timeout);
}

} // namespace ghscale
