#include "transport/prometheus.hpp"

#include <charconv>
#include <cmath>
#include <map>
#include <stdexcept>
#include <string_view>
#include <utility>
#include <vector>

namespace ghscale {

namespace {

/// What each family measures, for the `# HELP` line. Families not listed
/// get a generic text: a new metric never breaks the page.
const std::map<std::string, std::string, std::less<>> help_texts = {
  {"ghscale_aws_calls_total", "EC2 and SSM calls made, by API."},
  {"ghscale_aws_retries_total", "AWS calls retried, by service and API."},
  {"ghscale_aws_throttled_total",
   "AWS calls answered with throttling, by service and API."},
  {"ghscale_aws_throttles_total", "CreateFleet calls throttled by EC2."},
  {"ghscale_desired_runners",
   "Runners a pool wants: active plus granted launches."},
  {"ghscale_duplicates_suppressed_total",
   "Duplicate job events dropped by the scaler, by pool."},
  {"ghscale_github_http_requests_total",
   "GitHub REST responses, by operation and status class."},
  {"ghscale_github_http_seconds",
   "GitHub REST request latency in seconds, by operation."},
  {"ghscale_github_invalid_responses_total",
   "GitHub responses that could not be parsed, by operation."},
  {"ghscale_github_queue_depth",
   "GitHub requests waiting for budget, summed over each App's installations."},
  {"ghscale_github_rate_remaining",
   "GitHub primary rate limit remaining, the lowest of each App's installations."},
  {"ghscale_github_requests_total",
   "GitHub App requests, by operation and status."},
  {"ghscale_github_retries_total", "GitHub requests retried, by operation."},
  {"ghscale_job_rechecks_total",
   "Delayed re-checks of still-queued jobs, by pool and outcome."},
  {"ghscale_jobs_total",
   "Queued jobs decided by the scaler, by pool and outcome."},
  {"ghscale_jobs_unrouted_total", "Job events that matched no pool, by queue."},
  {"ghscale_launch_failures_total",
   "Runner launches that failed, by pool and error code."},
  {"ghscale_launch_seconds",
   "Seconds from a launch request to its runner registering, by pool."},
  {"ghscale_launch_terminate_failures_total",
   "Unused instances that could not be terminated, by pool."},
  {"ghscale_launches_total",
   "Runner instances launched, by pool and capacity type."},
  {"ghscale_ledger_unknown_runner_total",
   "Job events naming a runner the ledger does not know, by pool."},
  {"ghscale_loop_heartbeats_refused_total",
   "Poll-loop heartbeats refused because the lease moved on (fencing), by queue."},
  {"ghscale_loop_revival_seconds",
   "Seconds from a poll loop going stale to its replacement, by queue."},
  {"ghscale_loops_revived_total", "Stale poll loops replaced, by queue."},
  {"ghscale_messages_total",
   "Queue messages settled, by queue and outcome (acked, retried, dead-lettered)."},
  {"ghscale_poll_loops", "Poll loops running, by queue."},
  {"ghscale_queue_action_failures_total",
   "Failed queue deletes and visibility changes, by queue and action."},
  {"ghscale_queue_deleted_total",
   "Messages deleted from the embedded queue, by queue."},
  {"ghscale_queue_depth",
   "Approximate queue depth, by queue and kind (visible, in_flight, delayed)."},
  {"ghscale_queue_depth_errors_total", "Failed queue depth samples, by queue."},
  {"ghscale_queue_received_total",
   "Messages received from the embedded queue, by queue."},
  {"ghscale_queue_redriven_total",
   "Messages moved to the dead-letter queue, by queue."},
  {"ghscale_queue_sent_total",
   "Messages sent to the embedded queue, by queue."},
  {"ghscale_queue_store_errors_total",
   "Embedded queue store failures, by queue."},
  {"ghscale_reaper_actions_total",
   "Scale-down actions taken, by pool and action."},
  {"ghscale_reaper_api_calls_total",
   "API calls made by scale-down passes, by pool."},
  {"ghscale_reaper_errors_total", "Scale-down steps that failed, by pool."},
  {"ghscale_reaper_last_pass_api_calls",
   "API calls made by the last scale-down pass, by pool."},
  {"ghscale_receive_errors_total", "Failed queue receives, by queue."},
  {"ghscale_runner_taken_total",
   "Runners that took a job other than the one they were launched for, by pool."},
  {"ghscale_runners", "Runners by pool and lifecycle state."},
  {"ghscale_scaler_decisions_total", "Scaling decisions made, by pool."},
  {"ghscale_sim_aws_calls_total", "Calls served by the simulated AWS backend."},
  {"ghscale_sim_github_responses_total",
   "Responses served by the simulated GitHub."},
  {"ghscale_spot_failover_total",
   "Spot shortfalls filled with on-demand capacity, by pool."},
  {"ghscale_spot_interruptions_total", "Spot interruptions seen, by pool."},
  {"ghscale_time_to_ready_seconds",
   "Seconds from launch to runner ready, by pool."},
  {"ghscale_time_to_start_seconds",
   "Seconds from a job being queued to it starting on a runner (GitHub's times), by pool."},
  {"ghscale_webhook_deliveries_total",
   "Webhook deliveries, by outcome (accepted or the reason for rejecting)."},
  {"ghscale_webhook_seconds",
   "Seconds to answer a webhook delivery, enqueueing included."},
};

enum class family_type { counter, gauge, histogram };

const char* type_name(family_type t) {
  switch (t) {
    case family_type::counter: return "counter";
    case family_type::gauge: return "gauge";
    case family_type::histogram: return "histogram";
  }
  return "untyped";
}

struct family {
  family_type type;
  std::vector<std::string> samples; // rendered sample lines, in key order
};

using family_map = std::map<std::string, family>;

/// A series key of the registry, "name{k=\"v\",...}", split into its name
/// and its label list (without braces; already escaped by series_key).
struct series {
  std::string name;
  std::string labels;
};

series split_key(const std::string& key) {
  auto brace = key.find('{');
  if (brace == std::string::npos)
    return {key, ""};
  return {key.substr(0, brace), key.substr(brace + 1, key.size() - brace - 2)};
}

/// Go's ParseFloat spellings for the special values, shortest round-trip
/// decimal otherwise.
std::string format_number(double x) {
  if (std::isnan(x))
    return "NaN";
  if (std::isinf(x))
    return x > 0 ? "+Inf" : "-Inf";
  char buf[32];
  auto res = std::to_chars(buf, buf + sizeof(buf), x);
  return {buf, res.ptr};
}

std::string sample(const std::string& name, const std::string& labels,
                   const std::string& value) {
  if (labels.empty())
    return name + " " + value;
  return name + "{" + labels + "} " + value;
}

std::string with_label(const std::string& labels, const std::string& extra) {
  return labels.empty() ? extra : labels + "," + extra;
}

/// The family `name` of type `type`, created on first use. One name with two
/// types is a bug in the code that records it: the page would be invalid.
family& family_of(family_map& families, const std::string& name,
                  family_type type) {
  auto [it, added] = families.emplace(name, family{type, {}});
  if (!added && it->second.type != type)
    throw std::logic_error("metric family " + name + " recorded as both "
                           + type_name(it->second.type) + " and "
                           + type_name(type));
  return it->second;
}

void add_counters(family_map& families, const metric_snapshot& registry) {
  constexpr std::string_view suffix = "_total";
  for (const auto& [key, value] : registry.counters) {
    auto s = split_key(key);
    auto name = s.name;
    if (name.size() < suffix.size()
        || name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
      name += suffix;
    family_of(families, name, family_type::counter)
      .samples.push_back(sample(name, s.labels, std::to_string(value)));
  }
}

void add_gauges(family_map& families, const metric_snapshot& registry) {
  for (const auto& [key, value] : registry.gauges) {
    auto s = split_key(key);
    family_of(families, s.name, family_type::gauge)
      .samples.push_back(sample(s.name, s.labels, format_number(value)));
  }
}

void add_histograms(family_map& families, const metric_snapshot& registry) {
  for (const auto& [key, h] : registry.histograms) {
    auto s = split_key(key);
    auto& f = family_of(families, s.name, family_type::histogram);
    auto bucket = s.name + "_bucket";
    for (size_t i = 0; i < h.bounds.size() && i < h.buckets.size(); ++i) {
      auto le = "le=\"" + format_number(h.bounds[i]) + "\"";
      f.samples.push_back(sample(bucket, with_label(s.labels, le),
                                 std::to_string(h.buckets[i])));
    }
    f.samples.push_back(sample(bucket, with_label(s.labels, "le=\"+Inf\""),
                               std::to_string(h.count)));
    f.samples.push_back(sample(s.name + "_sum", s.labels, format_number(h.sum)));
    f.samples.push_back(
      sample(s.name + "_count", s.labels, std::to_string(h.count)));
  }
}

/// HELP text escaping of the format: backslash and line feed.
std::string escape_help(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

} // namespace

std::string metric_help(const std::string& family) {
  auto i = help_texts.find(family);
  return i != help_texts.end() ? i->second : "ghscale metric " + family + ".";
}

std::string render_prometheus(const metric_snapshot& registry) {
  family_map families;
  add_counters(families, registry);
  add_gauges(families, registry);
  add_histograms(families, registry);
  std::string out;
  for (const auto& [name, f] : families) {
    out += "# HELP " + name + " " + escape_help(metric_help(name)) + "\n";
    out += "# TYPE " + name + " " + type_name(f.type) + "\n";
    for (const auto& line : f.samples)
      out += line + "\n";
  }
  return out;
}

} // namespace ghscale
