#include "bench/scenario/simulation.hpp"

#include "actors/metrics.hpp"
#include "actors/node.hpp"
#include "bench/scenario/virtual_time.hpp"
#include "messages/actors.hpp"
#include "transport/workflow_job.hpp"

#include <caf/scheduler/test_coordinator.hpp>

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <sstream>

namespace ghscale::scenario {

namespace {

using clock_type = caf::actor_clock;

/// Sum of a counter over the series whose labels include `label="value"`.
int64_t sum_where(const metrics& m, const std::string& name,
                  const std::string& label, const std::string& value) {
  int64_t sum = 0;
  auto needle = label + "=\"" + value + "\"";
  for (auto& [key, count] : m.counters())
    if (key.rfind(name + "{", 0) == 0 && key.find(needle) != std::string::npos)
      sum += count;
  return sum;
}

/// Backend stats mix API call counts ("CreateFleet", "get_job 200") with
/// ground truth; these are the calls.
bool is_api_call(const std::string& kind) {
  static const char* truth[] = {"never_started ", "ran_on ", "launched_ms ",
                                "peak_instances", "instances_", "jobs_",
                                "runners_", "github_", "job_tag_repeats",
                                "jit_configs_created", "webhooks_"};
  for (auto prefix : truth)
    if (kind.rfind(prefix, 0) == 0)
      return false;
  return true;
}

double percentile(std::vector<double> xs, double p) {
  if (xs.empty())
    return 0;
  auto rank = static_cast<size_t>(std::ceil(p * static_cast<double>(xs.size()))) - 1;
  rank = std::min(rank, xs.size() - 1);
  std::nth_element(xs.begin(), xs.begin() + static_cast<long>(rank), xs.end());
  return xs[rank];
}

/// Drives a virtual-time actor system: runs every due message and timer.
class world_driver {
public:
  explicit world_driver(caf::actor_system& sys)
    : sys_(sys),
      sched_(dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler())),
      self_(sys, true) {
    start_ = sched_.clock().now();
  }

  caf::timespan elapsed() const { return sched_.clock().now() - start_; }
  /// The start on the actor clock (what backends report times against).
  caf::timespan start() const { return start_.time_since_epoch(); }

  /// Processes everything due up to `start + at`, then sets the clock there.
  void run_until(caf::timespan at) {
    auto left = start_ + at - sched_.clock().now();
    advance(sched_, std::max(left, caf::timespan{0}));
  }

  template <class T, class Handle, class... Ts>
  caf::expected<T> ask(const Handle& dest, Ts&&... xs) {
    return ask_now<T>(sched_, self_, dest, std::forward<Ts>(xs)...);
  }

private:
  caf::actor_system& sys_;
  caf::scheduler::test_coordinator& sched_;
  caf::scoped_actor self_;
  clock_type::time_point start_;
};

std::map<std::string, int64_t> as_map(const caf::expected<api_calls>& calls) {
  std::map<std::string, int64_t> out;
  if (calls)
    for (auto& [kind, n] : calls->by_kind)
      out[kind] += n;
  return out;
}

/// Job keys of every message on a queue, received (and so hidden) for good.
std::set<std::string> drain_keys(world_driver& world, const queue_actor& q) {
  std::set<std::string> keys;
  for (;;) {
    auto batch = world.ask<received_batch>(
      q, atom::receive_v,
      receive_request{10, caf::timespan{0}, std::chrono::hours(12)});
    if (!batch || batch->messages.empty())
      return keys;
    for (auto& msg : batch->messages)
      if (auto ev = parse_job_event(msg.body))
        keys.insert(to_string(ev->key));
  }
}

bool world_is_quiet(world_driver& world, const embedded_world& w,
                    const config& cfg) {
  auto github = as_map(world.ask<api_calls>(w.github, atom::stats_v));
  if (github["jobs_never_started"] > 0 || github["jobs_running"] > 0)
    return false;
  for (auto& pool : cfg.pools) {
    auto depth = world.ask<queue_depth>(w.wiring.queues.at(pool.queue),
                                        atom::depth_v);
    if (!depth || depth->visible + depth->in_flight + depth->delayed > 0)
      return false;
  }
  return true;
}

} // namespace

void inject(const trace_entry& entry, const embedded_world& world,
            const node_actor& node) {
  switch (entry.what) {
    case trace_entry::kind::job:
      caf::anon_send(world.github, atom::inject_v, entry.job);
      break;
    case trace_entry::kind::fault:
      if (entry.fault.kind.rfind("github_", 0) == 0)
        caf::anon_send(world.github, atom::inject_v, entry.fault);
      else
        caf::anon_send(world.cloud, atom::inject_v, entry.fault);
      break;
    case trace_entry::kind::crash:
      caf::anon_send(node, atom::inject_v, entry.child);
      break;
  }
}

bool simulation_report::ok() const {
  for (auto& p : peaks)
    if (p.peak > p.cap)
      return false;
  return jobs_lost == 0 && duplicate_launches == 0;
}

caf::expected<simulation_report>
run_simulation(const config& cfg, const std::vector<trace_entry>& trace,
               const std::string& trace_name, const simulation_options& opts) {
  caf::actor_system_config sys_cfg;
  register_types(sys_cfg);
  sys_cfg.set("scheduler.policy", caf::atom("testing"));
  caf::actor_system sys{sys_cfg};
  auto stats = std::make_shared<metrics>();
  auto w = spawn_embedded_backends(sys, cfg, stats);
  if (!w)
    return w.error();
  auto node = spawn_node(sys, cfg, w->wiring, stats);
  if (!node)
    return node.error();
  world_driver world{sys};
  simulation_report r;
  r.trace = trace_name;
  std::map<std::string, double> queued_at; // job key -> seconds
  for (auto& entry : trace) {
    world.run_until(entry.at);
    if (entry.what == trace_entry::kind::job) {
      queued_at.emplace(to_string(entry.job.event.key),
                        std::chrono::duration<double>(entry.at).count());
      r.deliveries += 1 + entry.job.duplicates;
    }
    inject(entry, *w, node->node);
  }
  r.jobs_seen = static_cast<int64_t>(queued_at.size());
  // Let the world settle: runners boot, jobs run, retries come back.
  auto last = trace.empty() ? caf::timespan{0} : trace.back().at;
  for (auto t = last + opts.check_every; t <= last + opts.horizon;
       t += opts.check_every) {
    world.run_until(t);
    if (world_is_quiet(world, *w, cfg))
      break;
  }
  r.simulated_seconds = std::chrono::duration<double>(world.elapsed()).count();
  if (auto status = world.ask<node_status>(node->node, atom::status_v))
    for (auto& child : status->children)
      r.restarts += child.restarts;
  // Ground truth from the simulated world.
  auto github = as_map(world.ask<api_calls>(w->github, atom::stats_v));
  auto cloud = as_map(world.ask<api_calls>(w->cloud, atom::stats_v));
  std::set<std::string> dead_lettered;
  std::set<std::string> still_queued;
  for (auto& q : cfg.queues) {
    auto keys = drain_keys(world, w->wiring.queues.at(q.name));
    auto& into = q.dead_letter.empty() ? dead_lettered : still_queued;
    into.insert(keys.begin(), keys.end());
  }
  r.jobs_dead_lettered = static_cast<int64_t>(dead_lettered.size());
  r.jobs_started = github["jobs_started"];
  r.jobs_completed = github["jobs_completed"];
  for (auto& [kind, n] : github)
    if (kind.rfind("never_started ", 0) == 0) {
      auto key = kind.substr(14);
      if (dead_lettered.count(key) == 0 && still_queued.count(key) == 0)
        ++r.jobs_lost;
    }
  r.runners_launched = cloud["instances_launched"];
  // Ephemeral runners are interchangeable: a job runs on whichever runner
  // takes it. More runners than jobs show as runners that came up and never
  // ran one when the world is quiet (less the idle minimum pools keep).
  int64_t idle_minimum = 0;
  for (auto& pool : cfg.pools)
    if (pool.mode == runner_mode::ephemeral)
      idle_minimum += pool.min_idle;
  r.duplicate_launches
    = std::max<int64_t>(0, github["runners_idle_never_used"] - idle_minimum);
  r.runners_taken = stats->total("ghscale_runner_taken_total");
  for (auto& pool : cfg.pools)
    r.peaks.push_back({pool.name, cloud["peak_instances " + pool.name],
                       pool.max_runners});
  // Queue-to-launch: from a job's queueing to the launch of the instance
  // whose runner took it (0 if that runner was already up).
  std::vector<double> latencies;
  auto origin = std::chrono::duration<double>(world.start()).count();
  for (auto& [kind, one] : github) {
    if (kind.rfind("ran_on ", 0) != 0)
      continue;
    auto space = kind.find(' ', 7);
    auto queued = queued_at.find(kind.substr(7, space - 7));
    auto launched = cloud.find("launched_ms " + kind.substr(space + 1));
    if (queued == queued_at.end() || launched == cloud.end())
      continue;
    auto at = static_cast<double>(launched->second) / 1000.0 - origin;
    latencies.push_back(std::max(0.0, at - queued->second));
  }
  r.latency_samples = static_cast<int64_t>(latencies.size());
  r.latency_p50 = percentile(latencies, 0.50);
  r.latency_p95 = percentile(latencies, 0.95);
  r.latency_p99 = percentile(latencies, 0.99);
  // ghscale's own view, from its metrics.
  r.jobs_unrouted = stats->total("ghscale_jobs_unrouted_total");
  r.duplicates_suppressed
    = stats->total("ghscale_duplicates_suppressed_total")
      + sum_where(*stats, "ghscale_jobs_total", "outcome", "already_served");
  r.messages_acked = sum_where(*stats, "ghscale_messages_total", "outcome", "acked");
  r.messages_retried = sum_where(*stats, "ghscale_messages_total", "outcome", "retried");
  r.messages_dead_lettered
    = sum_where(*stats, "ghscale_messages_total", "outcome", "dead_lettered");
  for (auto* source : {&github, &cloud})
    for (auto& [kind, n] : *source)
      if (is_api_call(kind))
        r.api_calls.emplace_back(kind, n);
  for (auto& [key, n] : stats->counters())
    if (key.rfind("ghscale_queue_", 0) == 0)
      r.api_calls.emplace_back(key, n);
  // Stop everything: the node first (ordered drain), then the world.
  caf::anon_send(node->node, atom::drain_v);
  world.run_until(world.elapsed() + cfg.timeouts.drain + std::chrono::seconds(30));
  caf::anon_send_exit(w->github, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(w->cloud, caf::exit_reason::user_shutdown);
  for (auto& [name, q] : w->wiring.queues)
    caf::anon_send_exit(q, caf::exit_reason::user_shutdown);
  world.run_until(world.elapsed() + std::chrono::seconds(10));
  return r;
}

std::string render_report(const simulation_report& r, bool json) {
  std::ostringstream out;
  auto fixed = [](double x) {
    std::ostringstream s;
    s.setf(std::ios::fixed);
    s.precision(3);
    s << x;
    return s.str();
  };
  if (json) {
    out << "{\"trace\":\"" << r.trace << "\",\"ok\":" << (r.ok() ? "true" : "false")
        << ",\"simulated_seconds\":" << fixed(r.simulated_seconds)
        << ",\"jobs_seen\":" << r.jobs_seen << ",\"deliveries\":" << r.deliveries
        << ",\"jobs_started\":" << r.jobs_started
        << ",\"jobs_completed\":" << r.jobs_completed
        << ",\"jobs_unrouted\":" << r.jobs_unrouted
        << ",\"jobs_dead_lettered\":" << r.jobs_dead_lettered
        << ",\"jobs_lost\":" << r.jobs_lost
        << ",\"runners_launched\":" << r.runners_launched
        << ",\"duplicate_launches\":" << r.duplicate_launches
        << ",\"duplicates_suppressed\":" << r.duplicates_suppressed
        << ",\"runners_taken\":" << r.runners_taken
        << ",\"messages_acked\":" << r.messages_acked
        << ",\"messages_retried\":" << r.messages_retried
        << ",\"messages_dead_lettered\":" << r.messages_dead_lettered
        << ",\"restarts\":" << r.restarts << ",\"peaks\":[";
    for (size_t i = 0; i < r.peaks.size(); ++i)
      out << (i ? "," : "") << "{\"pool\":\"" << r.peaks[i].pool
          << "\",\"peak\":" << r.peaks[i].peak << ",\"cap\":" << r.peaks[i].cap
          << "}";
    out << "],\"queue_to_launch_seconds\":{\"samples\":" << r.latency_samples
        << ",\"p50\":" << fixed(r.latency_p50) << ",\"p95\":" << fixed(r.latency_p95)
        << ",\"p99\":" << fixed(r.latency_p99) << "},\"api_calls\":{";
    for (size_t i = 0; i < r.api_calls.size(); ++i) {
      std::string key;
      for (char c : r.api_calls[i].first)
        key += c == '"' ? std::string{"\\\""} : std::string{c};
      out << (i ? "," : "") << "\"" << key << "\":" << r.api_calls[i].second;
    }
    out << "}}\n";
    return out.str();
  }
  out << "trace                   " << r.trace << "\n"
      << "simulated               " << fixed(r.simulated_seconds) << " s\n"
      << "jobs seen               " << r.jobs_seen << " (" << r.deliveries
      << " deliveries)\n"
      << "jobs started/completed  " << r.jobs_started << " / " << r.jobs_completed << "\n"
      << "jobs unrouted           " << r.jobs_unrouted << "\n"
      << "jobs dead-lettered      " << r.jobs_dead_lettered << "\n"
      << "jobs lost               " << r.jobs_lost << "\n"
      << "runners launched        " << r.runners_launched << "\n"
      << "duplicate launches      " << r.duplicate_launches << "\n"
      << "duplicates suppressed   " << r.duplicates_suppressed << "\n"
      << "runners taken by others " << r.runners_taken << " (replaced)\n"
      << "messages acked          " << r.messages_acked << "\n"
      << "messages retried        " << r.messages_retried << "\n"
      << "messages dead-lettered  " << r.messages_dead_lettered << "\n"
      << "actor restarts          " << r.restarts << "\n";
  for (auto& p : r.peaks)
    out << "peak runners            " << p.pool << ": " << p.peak << " of cap "
        << p.cap << (p.peak > p.cap ? "  OVER CAP" : "") << "\n";
  out << "queue-to-launch (s)     p50 " << fixed(r.latency_p50) << "  p95 "
      << fixed(r.latency_p95) << "  p99 " << fixed(r.latency_p99) << "  ("
      << r.latency_samples << " launches)\n"
      << "API calls by kind:\n";
  for (auto& [kind, n] : r.api_calls)
    out << "  " << kind << "  " << n << "\n";
  out << "result                  " << (r.ok() ? "OK" : "FAILED") << "\n";
  return out.str();
}

} // namespace ghscale::scenario
