#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "messages/text.hpp"

#include <algorithm>
#include <cctype>

namespace ghscale {

std::string to_string(errc x) {
  switch (x) {
    case errc::none: return "none";
    case errc::malformed_event: return "malformed_event";
    case errc::invalid_config: return "invalid_config";
    case errc::not_ready: return "not_ready";
    case errc::unavailable: return "unavailable";
    case errc::throttled: return "throttled";
    case errc::backend_failure: return "backend_failure";
    case errc::not_found: return "not_found";
    case errc::rejected: return "rejected";
    case errc::over_capacity: return "over_capacity";
    case errc::shutting_down: return "shutting_down";
    case errc::unknown_pool: return "unknown_pool";
    case errc::timeout: return "timeout";
    case errc::runner_busy: return "runner_busy";
  }
  return "unknown";
}

std::string describe(const caf::error& err) {
  if (!err)
    return "no error";
  std::string out;
  if (err.category() == caf::atom("ghscale"))
    out = to_string(static_cast<errc>(err.code()));
  else if (err.category() == caf::atom("system"))
    out = caf::to_string(static_cast<caf::sec>(err.code()));
  else
    out = caf::to_string(err.category()) + ":" + std::to_string(err.code());
  auto& ctx = err.context();
  if (ctx.match_elements<std::string>())
    out += ": " + ctx.get_as<std::string>(0);
  else if (!ctx.empty())
    out += ": " + caf::deep_to_string(ctx);
  return out;
}

std::string context_of(const caf::error& err) {
  auto& ctx = err.context();
  if (ctx.match_elements<std::string>())
    return ctx.get_as<std::string>(0);
  return describe(err);
}

outgoing_message dead_letter_for(const queue_message& msg,
                                 const std::string& source_queue,
                                 const std::string& reason) {
  constexpr size_t max_reason = 1024;
  auto cut = std::min(reason.size(), max_reason);
  // Back up over UTF-8 continuation bytes: SQS refuses invalid UTF-8.
  while (cut < reason.size() && cut > 0
         && (static_cast<unsigned char>(reason[cut]) & 0xC0) == 0x80)
    --cut;
  outgoing_message letter{msg.body, caf::timespan{0}, msg.attributes};
  letter.attributes[dead_letter_attribute::reason] = reason.substr(0, cut);
  letter.attributes[dead_letter_attribute::source_queue] = source_queue;
  letter.attributes[dead_letter_attribute::source_message_id] = msg.message_id;
  letter.attributes[dead_letter_attribute::receive_count]
    = std::to_string(msg.receive_count);
  return letter;
}

std::string to_string(owner_type x) {
  return x == owner_type::organization ? "Organization" : "User";
}

std::string to_string(const job_key& x) {
  return std::to_string(x.job_id) + "#" + std::to_string(x.run_attempt);
}

std::string to_string(job_action x) {
  switch (x) {
    case job_action::queued: return "queued";
    case job_action::in_progress: return "in_progress";
    case job_action::completed: return "completed";
    case job_action::waiting: return "waiting";
  }
  return "unknown";
}

std::string to_string(outcome_kind x) {
  switch (x) {
    case outcome_kind::done: return "done";
    case outcome_kind::retry: return "retry";
    case outcome_kind::poison: return "poison";
  }
  return "unknown";
}

std::string to_string(runner_state x) {
  switch (x) {
    case runner_state::requested: return "requested";
    case runner_state::pending: return "pending";
    case runner_state::ready: return "ready";
    case runner_state::running: return "running";
    case runner_state::completed: return "completed";
    case runner_state::failed: return "failed";
    case runner_state::orphaned: return "orphaned";
    case runner_state::terminated: return "terminated";
  }
  return "unknown";
}

bool counts_against_cap(runner_state x) noexcept {
  // An orphan's instance is alive (and billed) until the reaper ends it.
  return x == runner_state::requested || x == runner_state::pending
         || x == runner_state::ready || x == runner_state::running
         || x == runner_state::orphaned;
}

std::string to_string(capacity_type x) {
  return x == capacity_type::spot ? "spot" : "on-demand";
}

std::string to_string(instance_state x) {
  switch (x) {
    case instance_state::pending: return "pending";
    case instance_state::running: return "running";
    case instance_state::shutting_down: return "shutting-down";
    case instance_state::terminated: return "terminated";
    case instance_state::stopping: return "stopping";
    case instance_state::stopped: return "stopped";
  }
  return "unknown";
}

std::string to_string(github_op x) {
  switch (x) {
    case github_op::create_installation_token: return "create_installation_token";
    case github_op::generate_jit_config: return "generate_jit_config";
    case github_op::create_registration_token: return "create_registration_token";
    case github_op::get_job: return "get_job";
    case github_op::list_runners: return "list_runners";
    case github_op::delete_runner: return "delete_runner";
    case github_op::get_runner_group: return "get_runner_group";
    case github_op::get_installation: return "get_installation";
  }
  return "unknown";
}

bool is_mutation(github_op x) noexcept {
  return x == github_op::create_installation_token
         || x == github_op::generate_jit_config
         || x == github_op::create_registration_token
         || x == github_op::delete_runner;
}

bool is_sensitive_header(const std::string& name) noexcept {
  for (const char* secret : {"authorization", "x-amz-security-token",
                             "x-aws-ec2-metadata-token", "cookie", "set-cookie",
                             "proxy-authorization"})
    if (iequals(name, secret))
      return true;
  return false;
}

const std::string* find_header(const std::vector<http_header>& headers,
                               const std::string& name) noexcept {
  for (const auto& h : headers)
    if (iequals(h.name, name))
      return &h.value;
  return nullptr;
}

std::string to_string(request_priority x) {
  switch (x) {
    case request_priority::register_runner: return "register_runner";
    case request_priority::check_job: return "check_job";
    case request_priority::cleanup: return "cleanup";
  }
  return "unknown";
}

std::string to_string(heartbeat_verdict x) {
  return x == heartbeat_verdict::keep_going ? "keep_going" : "stop";
}

std::string to_string(backend_kind x) {
  return x == backend_kind::embedded ? "embedded" : "remote";
}

std::string to_string(label_match x) {
  return x == label_match::exact ? "exact" : "subset";
}

std::string to_string(runner_mode x) {
  return x == runner_mode::ephemeral ? "ephemeral" : "reusable";
}

namespace {
template <class T>
const T* find_named(const std::vector<T>& xs, const std::string& name) {
  for (auto& x : xs)
    if (x.name == name)
      return &x;
  return nullptr;
}
} // namespace

const queue_config* config::find_queue(const std::string& name) const {
  return find_named(queues, name);
}
const pool_config* config::find_pool(const std::string& name) const {
  return find_named(pools, name);
}
const github_app_config* config::find_app(const std::string& name) const {
  return find_named(github_apps, name);
}

const std::string* find_tag(const std::vector<tag>& tags, const std::string& key) {
  for (auto& t : tags)
    if (t.key == key)
      return &t.value;
  return nullptr;
}

void register_types(caf::actor_system_config& cfg) {
  cfg.add_message_types<caf::id_block::ghscale>();
  cfg.add_message_type<std::vector<std::string>>("std::vector<std::string>");
  cfg.add_message_type<std::vector<visibility_change>>(
    "std::vector<ghscale::visibility_change>");
  cfg.add_message_type<std::vector<outgoing_message>>(
    "std::vector<ghscale::outgoing_message>");
  cfg.add_message_type<queue_actor>("ghscale::queue_actor");
  cfg.add_message_type<installation_client_actor>(
    "ghscale::installation_client_actor");
  cfg.add_message_type<sim_cloud_actor>("ghscale::sim_cloud_actor");
  cfg.add_message_type<poller_actor>("ghscale::poller_actor");
  cfg.add_error_category(
    caf::atom("ghscale"),
    [](uint8_t code, caf::atom_value, const caf::message& ctx) {
      return "ghscale: " + describe(caf::error{code, caf::atom("ghscale"), ctx});
    });
}

} // namespace ghscale
