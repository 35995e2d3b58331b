#include "transport/ec2_event.hpp"
#include "transport/json.hpp"

#include "messages/types.hpp"
#include "transport/digest.hpp"
#include "transport/wall_clock.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace ghscale {

namespace {

constexpr const char* ec2_source = "aws.ec2";
constexpr const char* interruption_type = "EC2 Spot Instance Interruption Warning";

/// Where the simulated events claim to come from (AWS's documentation uses
/// the same placeholder account).
constexpr const char* sim_account = "123456789012";
constexpr const char* sim_region = "us-east-1";
constexpr const char* sim_zone = "us-east-1a";

caf::error malformed_at(const std::string& what, const std::string& path) {
  return caf::make_error(errc::malformed_event,
                         "spot interruption warning: " + what + " at " + path);
}

bool string_member_is(const rapidjson::Value& obj, const char* key,
                      const char* expected) {
  auto it = obj.FindMember(key);
  return it != obj.MemberEnd() && it->value.IsString()
         && std::string{it->value.GetString()} == expected;
}

/// "i-" and 8 (older instances) to 17 lower-case hex digits.
bool is_instance_id(const std::string& id) {
  if (id.size() < 10 || id.size() > 19)
    return false;
  if (id.compare(0, 2, "i-") != 0)
    return false;
  return id.find_first_not_of("0123456789abcdef", 2) == std::string::npos;
}

/// A string member of `obj` or an error naming its path.
caf::expected<std::string> required_string(const rapidjson::Value& obj,
                                           const char* key,
                                           const std::string& path) {
  auto it = obj.FindMember(key);
  if (it == obj.MemberEnd() || it->value.IsNull())
    return malformed_at("missing", path + "." + key);
  if (!it->value.IsString())
    return malformed_at("not a string", path + "." + key);
  return std::string{it->value.GetString(), it->value.GetStringLength()};
}

/// A UUID-shaped event id, derived from what the event says so that the
/// same warning always has the same id (simulations are deterministic).
std::string event_id(const std::string& instance_id, caf::timespan at) {
  auto digest = hex(sha256(instance_id + "@" + std::to_string(at.count())));
  return digest.substr(0, 8) + "-" + digest.substr(8, 4) + "-"
         + digest.substr(12, 4) + "-" + digest.substr(16, 4) + "-"
         + digest.substr(20, 12);
}

} // namespace

caf::expected<std::optional<std::string>>
parse_spot_interruption(const std::string& body) {
  rapidjson::Document doc;
  parse_outside_json(doc, body);
  if (doc.HasParseError() || !doc.IsObject())
    return std::optional<std::string>{};
  if (!string_member_is(doc, "source", ec2_source)
      || !string_member_is(doc, "detail-type", interruption_type))
    return std::optional<std::string>{};
  auto detail = doc.FindMember("detail");
  if (detail == doc.MemberEnd() || !detail->value.IsObject())
    return malformed_at("missing or not an object", "$.detail");
  auto id = required_string(detail->value, "instance-id", "$.detail");
  if (!id)
    return id.error();
  if (!is_instance_id(*id))
    return malformed_at("not an EC2 instance id", "$.detail.instance-id");
  // Terminate, stop or hibernate: whichever, the runner goes away, so any
  // action is taken at its word (AWS may add more).
  auto action = required_string(detail->value, "instance-action", "$.detail");
  if (!action)
    return action.error();
  if (action->empty())
    return malformed_at("empty", "$.detail.instance-action");
  return std::optional<std::string>{std::move(*id)};
}

std::string to_spot_interruption_event(const std::string& instance_id,
                                       caf::timespan at) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> out{buf};
  auto member = [&](const char* key, const std::string& value) {
    out.Key(key);
    out.String(value.c_str(), static_cast<rapidjson::SizeType>(value.size()));
  };
  out.StartObject();
  member("version", "0");
  member("id", event_id(instance_id, at));
  member("detail-type", interruption_type);
  member("source", ec2_source);
  member("account", sim_account);
  member("time", rfc3339(at));
  member("region", sim_region);
  out.Key("resources");
  out.StartArray();
  auto arn = std::string{"arn:aws:ec2:"} + sim_zone + ":instance/" + instance_id;
  out.String(arn.c_str(), static_cast<rapidjson::SizeType>(arn.size()));
  out.EndArray();
  out.Key("detail");
  out.StartObject();
  member("instance-id", instance_id);
  member("instance-action", "terminate");
  out.EndObject();
  out.EndObject();
  return buf.GetString();
}

} // namespace ghscale
