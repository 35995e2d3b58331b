#include "transport/github_rest.hpp"
#include "transport/json.hpp"

#include "messages/text.hpp"
#include "transport/url.hpp"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <optional>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace ghscale {

namespace {

using std::chrono::seconds;

/// GitHub's largest page; fewer pages means fewer calls against the budget.
constexpr int page_size = 100;

/// The "Default" runner group, which every organization has.
constexpr int64_t default_runner_group_id = 1;

/// Where a JIT-configured runner keeps its checkouts (the runner's default).
constexpr const char* work_folder = "_work";

/// GitHub's error messages are a sentence or two; anything longer is cut so
/// a misbehaving proxy cannot flood logs and dead letters.
constexpr size_t max_message_chars = 300;


// -- requests ------------------------------------------------------------------

/// "/orgs/{org}" or "/repos/{owner}/{repo}": where runners of `target` live.
std::string scope_path(const repository_ref& target) {
  if (target.org_level())
    return "/orgs/" + uri_encode(target.owner);
  return "/repos/" + uri_encode(target.owner) + "/" + uri_encode(target.repo);
}

std::string page_query(int32_t page) {
  return "?per_page=" + std::to_string(page_size)
         + "&page=" + std::to_string(std::max(page, 1));
}

std::string jit_config_body(const github_request& req) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w{buf};
  w.StartObject();
  w.Key("name");
  w.String(req.runner_name.c_str(),
           static_cast<rapidjson::SizeType>(req.runner_name.size()));
  w.Key("runner_group_id");
  w.Int64(req.runner_group_id != 0 ? req.runner_group_id : default_runner_group_id);
  w.Key("labels");
  w.StartArray();
  for (const auto& label : req.labels)
    w.String(label.c_str(), static_cast<rapidjson::SizeType>(label.size()));
  w.EndArray();
  w.Key("work_folder");
  w.String(work_folder);
  w.EndObject();
  return buf.GetString();
}

const char* method_of(github_op op) {
  switch (op) {
    case github_op::create_installation_token:
    case github_op::generate_jit_config:
    case github_op::create_registration_token:
      return "POST";
    case github_op::delete_runner:
      return "DELETE";
    case github_op::get_job:
    case github_op::list_runners:
    case github_op::get_runner_group:
    case github_op::get_installation:
      return "GET";
  }
  throw std::logic_error("github_op out of range");
}

// -- responses -----------------------------------------------------------------

std::optional<int64_t> parse_int(std::string_view text) {
  text = trim_space(text);
  int64_t out = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  if (ec != std::errc{} || end != text.data() + text.size() || text.empty())
    return std::nullopt;
  return out;
}

std::optional<int64_t> int_header(const http_response& r, const char* name) {
  auto value = find_header(r.headers, name);
  return value != nullptr ? parse_int(*value) : std::nullopt;
}

/// x-ratelimit-*; absent or malformed headers leave their fields at 0, which
/// callers read as "unknown".
rate_limit rate_limit_of(const http_response& r, const clock_bridge& clocks) {
  rate_limit out;
  out.limit = int_header(r, "x-ratelimit-limit").value_or(0);
  out.remaining = int_header(r, "x-ratelimit-remaining").value_or(0);
  if (auto reset = int_header(r, "x-ratelimit-reset"))
    out.reset_at = clocks.to_actor(clamped<seconds>(*reset));
  return out;
}

/// retry-after as delay-seconds or an HTTP-date (RFC 7231 7.1.3); 0 if absent.
caf::timespan retry_after_of(const http_response& r, const clock_bridge& clocks) {
  auto value = find_header(r.headers, "retry-after");
  if (value == nullptr)
    return caf::timespan{0};
  if (auto delay = parse_int(*value))
    return std::max(clamped<seconds>(*delay), caf::timespan{0});
  if (auto date = parse_http_date(trim_space(*value)))
    return std::max(*date - clocks.wall_now, caf::timespan{0});
  return caf::timespan{0};
}

/// True if one of the Link header's entries (RFC 8288) has rel "next".
bool has_next_link(const http_response& r) {
  auto value = find_header(r.headers, "link");
  if (value == nullptr)
    return false;
  std::string_view rest = *value;
  while (true) {
    auto close = rest.find('>');
    if (close == std::string_view::npos)
      return false;
    rest.remove_prefix(close + 1);
    auto params = rest.substr(0, rest.find('<'));
    while (!params.empty()) {
      auto semi = params.find_first_of(";,");
      auto param = trim_space(params.substr(0, semi));
      params.remove_prefix(semi == std::string_view::npos ? params.size() : semi + 1);
      if (param.size() < 4 || param.substr(0, 4) != "rel=")
        continue;
      auto rels = param.substr(4);
      if (!rels.empty() && rels.front() == '"')
        rels = rels.substr(1, rels.find('"', 1) - 1);
      while (!rels.empty()) {
        auto space = rels.find(' ');
        if (rels.substr(0, space) == "next")
          return true;
        rels.remove_prefix(space == std::string_view::npos ? rels.size() : space + 1);
      }
    }
  }
}

/// Reads the fields an operation needs from a 2xx body, naming the first
/// one that is missing or of the wrong type.
class body_reader {
public:
  explicit body_reader(const github_request& req) : req_(req) {}

  caf::error parse(const secret_string& body) {
    parse_outside_json(doc_, body.value);
    if (doc_.HasParseError() || !doc_.IsObject())
      return failure("the body is not a JSON object");
    return caf::none;
  }

  const rapidjson::Value& root() const { return doc_; }

  /// Member `name` of `obj` (at `where`), which `check` accepts, or an error.
  template <class Check>
  caf::expected<const rapidjson::Value*>
  field(const rapidjson::Value& obj, const std::string& where, const char* name,
        Check check) const {
    auto it = obj.FindMember(name);
    if (it == obj.MemberEnd() || !check(it->value))
      return failure("missing or mistyped field '" + where + name + "'");
    return &it->value;
  }

  caf::expected<std::string> string(const rapidjson::Value& obj,
                                    const std::string& where,
                                    const char* name) const {
    auto v = field(obj, where, name, [](auto& x) { return x.IsString(); });
    if (!v)
      return std::move(v.error());
    return std::string{(*v)->GetString(), (*v)->GetStringLength()};
  }

  caf::expected<int64_t> integer(const rapidjson::Value& obj,
                                 const std::string& where, const char* name) const {
    auto v = field(obj, where, name, [](auto& x) { return x.IsInt64(); });
    if (!v)
      return std::move(v.error());
    return (*v)->GetInt64();
  }

  caf::expected<bool> boolean(const rapidjson::Value& obj,
                              const std::string& where, const char* name) const {
    auto v = field(obj, where, name, [](auto& x) { return x.IsBool(); });
    if (!v)
      return std::move(v.error());
    return (*v)->GetBool();
  }

  caf::expected<const rapidjson::Value*>
  array(const rapidjson::Value& obj, const std::string& where,
        const char* name) const {
    return field(obj, where, name, [](auto& x) { return x.IsArray(); });
  }

  caf::expected<const rapidjson::Value*>
  object(const rapidjson::Value& obj, const std::string& where,
         const char* name) const {
    return field(obj, where, name, [](auto& x) { return x.IsObject(); });
  }

  caf::error failure(const std::string& what) const {
    return caf::make_error(errc::backend_failure,
                           "GitHub " + to_string(req_.op) + " " + github_path(req_)
                             + ": " + what);
  }

private:
  const github_request& req_;
  rapidjson::Document doc_;
};

/// Unwraps `x` into `out`, or returns its error from the enclosing function.
#define GHSCALE_TRY(out, x)                                                    \
  auto out##_result = (x);                                                     \
  if (!out##_result)                                                           \
    return std::move(out##_result.error());                                    \
  auto out = std::move(*out##_result)

caf::error read_token(const body_reader& in, const clock_bridge& clocks,
                      github_response& res) {
  GHSCALE_TRY(token, in.string(in.root(), "", "token"));
  GHSCALE_TRY(expires, in.string(in.root(), "", "expires_at"));
  auto expires_wall = parse_rfc3339(expires);
  if (!expires_wall)
    return in.failure("field 'expires_at' is not an RFC 3339 time");
  res.secret = secret_string{std::move(token)};
  res.expires_at = clocks.to_actor(*expires_wall);
  return caf::none;
}

caf::error read_jit_config(const body_reader& in, github_response& res) {
  GHSCALE_TRY(runner, in.object(in.root(), "", "runner"));
  GHSCALE_TRY(id, in.integer(*runner, "runner.", "id"));
  GHSCALE_TRY(config, in.string(in.root(), "", "encoded_jit_config"));
  res.runner_id = id;
  res.secret = secret_string{std::move(config)};
  return caf::none;
}

caf::expected<runner_info> read_runner(const body_reader& in,
                                       const rapidjson::Value& x,
                                       const std::string& where) {
  if (!x.IsObject())
    return in.failure("'" + where + "' is not an object");
  runner_info out;
  GHSCALE_TRY(id, in.integer(x, where + ".", "id"));
  GHSCALE_TRY(name, in.string(x, where + ".", "name"));
  GHSCALE_TRY(status, in.string(x, where + ".", "status"));
  GHSCALE_TRY(busy, in.boolean(x, where + ".", "busy"));
  GHSCALE_TRY(labels, in.array(x, where + ".", "labels"));
  out.id = id;
  out.name = std::move(name);
  out.status = std::move(status);
  out.busy = busy;
  for (rapidjson::SizeType i = 0; i < labels->Size(); ++i) {
    auto label_where = where + ".labels[" + std::to_string(i) + "]";
    if (!(*labels)[i].IsObject())
      return in.failure("'" + label_where + "' is not an object");
    GHSCALE_TRY(label, in.string((*labels)[i], label_where + ".", "name"));
    out.labels.push_back(std::move(label));
  }
  return out;
}

caf::error read_runners(const body_reader& in, github_response& res) {
  GHSCALE_TRY(runners, in.array(in.root(), "", "runners"));
  for (rapidjson::SizeType i = 0; i < runners->Size(); ++i) {
    GHSCALE_TRY(runner,
                read_runner(in, (*runners)[i], "runners[" + std::to_string(i) + "]"));
    res.runners.push_back(std::move(runner));
  }
  return caf::none;
}

caf::error read_runner_group(const body_reader& in, const std::string& wanted,
                             github_response& res) {
  GHSCALE_TRY(groups, in.array(in.root(), "", "runner_groups"));
  for (rapidjson::SizeType i = 0; i < groups->Size(); ++i) {
    auto where = "runner_groups[" + std::to_string(i) + "]";
    if (!(*groups)[i].IsObject())
      return in.failure("'" + where + "' is not an object");
    GHSCALE_TRY(id, in.integer((*groups)[i], where + ".", "id"));
    GHSCALE_TRY(name, in.string((*groups)[i], where + ".", "name"));
    if (name == wanted) {
      res.resource_id = id;
      return caf::none;
    }
  }
  return caf::none;
}

caf::error read_success_body(const github_request& req, const http_response& r,
                             const clock_bridge& clocks, github_response& res) {
  if (req.op == github_op::delete_runner)
    return caf::none; // 204, no body
  body_reader in{req};
  if (auto err = in.parse(r.body))
    return err;
  switch (req.op) {
    case github_op::create_installation_token:
    case github_op::create_registration_token:
      return read_token(in, clocks, res);
    case github_op::generate_jit_config:
      return read_jit_config(in, res);
    case github_op::get_job: {
      GHSCALE_TRY(status, in.string(in.root(), "", "status"));
      res.job_status = std::move(status);
      return caf::none;
    }
    case github_op::list_runners:
      return read_runners(in, res);
    case github_op::get_runner_group:
      return read_runner_group(in, req.runner_group, res);
    case github_op::get_installation: {
      GHSCALE_TRY(id, in.integer(in.root(), "", "id"));
      res.resource_id = id;
      return caf::none;
    }
    case github_op::delete_runner:
      break;
  }
  return caf::none;
}

#undef GHSCALE_TRY

/// GitHub's `message` from an error body, cut to a log-friendly length; the
/// body itself is never copied anywhere else.
std::string error_message_of(const http_response& r) {
  rapidjson::Document doc;
  parse_outside_json(doc, r.body.value);
  if (doc.HasParseError() || !doc.IsObject())
    return "";
  auto it = doc.FindMember("message");
  if (it == doc.MemberEnd() || !it->value.IsString())
    return "";
  std::string out{it->value.GetString(), it->value.GetStringLength()};
  if (out.size() > max_message_chars) {
    out.resize(max_message_chars);
    out += "...";
  }
  return out;
}

} // namespace

caf::error github_request_problem(const github_request& req) {
  if (req.target.owner.empty() && req.op != github_op::create_installation_token)
    return caf::make_error(errc::rejected,
                           "GitHub " + to_string(req.op) + ": no owner in the target");
  if (req.op == github_op::get_job && req.target.org_level())
    return caf::make_error(errc::rejected, "GitHub get_job: job "
                                             + std::to_string(req.job_id)
                                             + " needs a repository, got "
                                             + req.target.full_name());
  return caf::none;
}

std::string github_path(const github_request& req) {
  const auto runners = scope_path(req.target) + "/actions/runners";
  switch (req.op) {
    case github_op::create_installation_token:
      return "/app/installations/" + std::to_string(req.installation_id)
             + "/access_tokens";
    case github_op::generate_jit_config:
      return runners + "/generate-jitconfig";
    case github_op::create_registration_token:
      return runners + "/registration-token";
    case github_op::get_job:
      return scope_path(req.target) + "/actions/jobs/" + std::to_string(req.job_id);
    case github_op::list_runners:
      // With a runner name: only the runner of that name (GitHub's filter).
      return runners + page_query(req.page)
             + (req.runner_name.empty() ? "" : "&name=" + uri_encode(req.runner_name));
    case github_op::delete_runner:
      return runners + "/" + std::to_string(req.runner_id);
    case github_op::get_runner_group:
      return "/orgs/" + uri_encode(req.target.owner) + "/actions/runner-groups"
             + page_query(req.page);
    case github_op::get_installation:
      return scope_path(req.target) + "/installation";
  }
  throw std::logic_error("github_op out of range");
}

http_request build_github_request(const github_endpoint& ep,
                                  const github_request& req,
                                  caf::timespan timeout) {
  if (auto problem = github_request_problem(req))
    throw std::invalid_argument(describe(problem));
  std::string_view base = ep.base_url;
  while (!base.empty() && base.back() == '/')
    base.remove_suffix(1);
  http_request out;
  out.method = method_of(req.op);
  out.url = std::string{base} + github_path(req);
  out.timeout = timeout;
  out.headers = {
    {"Accept", "application/vnd.github+json"},
    {"X-GitHub-Api-Version", ep.api_version},
    {"User-Agent", ep.user_agent},
    {"Authorization", "Bearer " + req.credential.value},
  };
  if (req.op == github_op::generate_jit_config) {
    out.headers.push_back({"Content-Type", "application/json"});
    out.body = secret_string{jit_config_body(req)};
  }
  return out;
}

caf::expected<github_response> parse_github_response(const github_request& req,
                                                     const http_response& r,
                                                     const clock_bridge& clocks) {
  github_response res;
  res.status = r.status;
  res.rate = rate_limit_of(r, clocks);
  res.retry_after = retry_after_of(r, clocks);
  if (r.status >= 400) {
    res.message = error_message_of(r);
    return res;
  }
  if (r.status < 200 || r.status >= 300)
    return res;
  res.has_next_page = has_next_link(r);
  if (auto err = read_success_body(req, r, clocks, res))
    return err;
  return res;
}

} // namespace ghscale
