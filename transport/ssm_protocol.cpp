#include "transport/ssm_protocol.hpp"

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace ghscale {

namespace {

using json_writer = rapidjson::Writer<rapidjson::StringBuffer>;

constexpr std::string_view ssm_json_version = "1.1";

void string_member(json_writer& w, const char* key, const std::string& value) {
  w.Key(key);
  w.String(value.data(), static_cast<rapidjson::SizeType>(value.size()));
}

/// One call whose body starts with {"Name": name, ...}.
template <class WriteRest>
http_request ssm_call(const aws_endpoint& ep, const char* action,
                      const std::string& name, caf::timespan timeout,
                      WriteRest write_rest) {
  rapidjson::StringBuffer buf;
  json_writer w{buf};
  w.StartObject();
  string_member(w, "Name", name);
  write_rest(w);
  w.EndObject();
  return aws_json_request(ep, ssm_json_version, std::string{"AmazonSSM."} + action,
                          std::string{buf.GetString(), buf.GetSize()}, timeout);
}

} // namespace

http_request ssm_put_parameter(const aws_endpoint& ep, const parameter& param,
                               const std::string& kms_key_id,
                               caf::timespan timeout) {
  return ssm_call(ep, "PutParameter", param.name, timeout, [&](json_writer& w) {
    string_member(w, "Value", param.value.value);
    string_member(w, "Type", "SecureString");
    if (!kms_key_id.empty())
      string_member(w, "KeyId", kms_key_id);
    w.Key("Overwrite");
    w.Bool(false);
    if (!param.tags.empty()) {
      w.Key("Tags");
      w.StartArray();
      for (auto& t : param.tags) {
        w.StartObject();
        string_member(w, "Key", t.key);
        string_member(w, "Value", t.value);
        w.EndObject();
      }
      w.EndArray();
    }
  });
}

http_request ssm_delete_parameter(const aws_endpoint& ep, const std::string& name,
                                  caf::timespan timeout) {
  return ssm_call(ep, "DeleteParameter", name, timeout, [](json_writer&) {});
}

http_request ssm_get_parameter(const aws_endpoint& ep, const std::string& name,
                               caf::timespan timeout) {
  return ssm_call(ep, "GetParameter", name, timeout, [](json_writer& w) {
    w.Key("WithDecryption");
    w.Bool(true);
  });
}

caf::expected<secret_string> parse_ssm_parameter_value(std::string_view body,
                                                       const std::string& what) {
  rapidjson::Document doc;
  if (auto err = parse_json_body(body, what, doc))
    return err;
  auto param = doc.FindMember("Parameter");
  if (param == doc.MemberEnd() || !param->value.IsObject()
      || !param->value.HasMember("Value"))
    return malformed_answer(what, "no Parameter.Value");
  return secret_string{json_string(param->value, "Value")};
}

} // namespace ghscale
