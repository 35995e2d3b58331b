#include "actors/embedded/simulation.hpp"

#include "actors/ops/metrics.hpp"
#include "actors/node.hpp"
#include "actors/routing.hpp"
#include "actors/embedded/virtual_time.hpp"
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
                                "alive_ms ", "registered_on ", "wait_ms ",
                                "peak_instances", "instances_", "jobs_",
                                "runners_", "github_", "job_tag_repeats",
                                "jit_configs_created", "webhooks_", "spot_",
                                "events_", "ghost_registrations"};
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

/// Every loop killed on the queue was replaced, none later than `threshold`.
bool replaced_in_time(const loop_timeline& l, double threshold) {
  return l.revived >= l.killed
         && (l.killed == 0 || l.max_revival_seconds <= threshold);
}

/// What the simulated backends know, with ghscale's leftovers counted.
struct ground_truth {
  std::map<std::string, int64_t> github;
  std::map<std::string, int64_t> cloud;
  int64_t ghosts = 0;  // registrations whose instance is gone
  int64_t orphans = 0; // instances alive without a registration
};

ground_truth look(world_driver& world, const embedded_world& w) {
  ground_truth out;
  out.github = as_map(world.ask<api_calls>(w.github, atom::stats_v));
  out.cloud = as_map(world.ask<api_calls>(w.cloud, atom::stats_v));
  out.ghosts = out.github["ghost_registrations"];
  const std::string alive = "alive_ms ";
  for (auto& [kind, launched] : out.cloud)
    if (kind.rfind(alive, 0) == 0
        && out.github.count("registered_on " + kind.substr(alive.size())) == 0)
      ++out.orphans;
  return out;
}

/// Samples the registry's status every `every`, into one timeline per queue.
class loop_sampler {
public:
  loop_sampler(const config& cfg, caf::timespan every)
    : every_(every), next_(every) {
    for (auto& q : cfg.queues)
      if (polled(cfg, q.name)) {
        loop_timeline t;
        t.queue = q.name;
        t.min_loops = q.min_loops;
        t.max_loops = q.max_loops;
        timelines_.push_back(std::move(t));
      }
  }

  /// Runs the world to `at`, sampling on the way.
  void run_until(world_driver& world, const token_registry_actor& registry,
                 caf::timespan at) {
    while (next_ <= at) {
      world.run_until(next_);
      sample(world, registry);
      next_ += every_;
    }
    world.run_until(at);
  }

  void killed(const std::string& queue) {
    if (auto t = find(queue))
      ++t->killed;
  }

  bool knows(const std::string& queue) const {
    return std::any_of(timelines_.begin(), timelines_.end(),
                       [&](const loop_timeline& t) { return t.queue == queue; });
  }

  /// Every queue is back at its minimum of loops.
  bool at_minimum() const {
    return std::all_of(timelines_.begin(), timelines_.end(),
                       [](const loop_timeline& t) { return t.last == t.min_loops; });
  }

  std::vector<loop_timeline> timelines() const { return timelines_; }

private:
  static bool polled(const config& cfg, const std::string& queue) {
    return std::any_of(cfg.pools.begin(), cfg.pools.end(),
                       [&](const pool_config& p) { return p.queue == queue; });
  }

  loop_timeline* find(const std::string& queue) {
    for (auto& t : timelines_)
      if (t.queue == queue)
        return &t;
    return nullptr;
  }

  void sample(world_driver& world, const token_registry_actor& registry) {
    auto status = world.ask<registry_status>(registry, atom::status_v);
    if (!status)
      return; // restarting: the next sample will tell
    auto second = std::chrono::duration<double>(world.elapsed()).count();
    for (auto& q : status->queues) {
      auto t = find(q.queue);
      if (t == nullptr)
        continue;
      if (t->series.empty()) {
        t->min = t->max = q.loops;
      }
      t->min = std::min(t->min, q.loops);
      t->max = std::max(t->max, q.loops);
      if (t->series.empty() || t->series.back().second != q.loops)
        t->series.emplace_back(second, q.loops);
      t->last = q.loops;
      t->scaled_up = q.scaled_up;
      t->scaled_down = q.scaled_down;
      t->revived = q.revived;
      t->max_revival_seconds = q.max_revival_seconds;
    }
  }

  caf::timespan every_;
  caf::timespan next_; // the first sample comes once the loops have started
  std::vector<loop_timeline> timelines_;
};

/// Nothing left to do, and nothing left behind: no job waiting or running,
/// empty queues, every queue back to its minimum of loops, and no ghost or
/// orphan the reaper has still to clean up.
bool world_is_quiet(world_driver& world, const embedded_world& w,
                    const config& cfg, const loop_sampler& loops) {
  auto truth = look(world, w);
  if (truth.github["jobs_never_started"] > 0 || truth.github["jobs_running"] > 0
      || truth.ghosts > 0 || truth.orphans > 0 || !loops.at_minimum())
    return false;
  for (auto& pool : cfg.pools) {
    auto depth = world.ask<queue_depth>(w.wiring.queues.at(pool.queue),
                                        atom::depth_v);
    if (!depth || depth->visible + depth->in_flight + depth->delayed > 0)
      return false;
  }
  return true;
}

/// Seconds between each job's queueing and its start on GitHub.
std::vector<double> waits(const std::map<std::string, int64_t>& github) {
  std::vector<double> out;
  const std::string wait = "wait_ms ";
  for (auto& [kind, ms] : github)
    if (kind.rfind(wait, 0) == 0)
      out.push_back(static_cast<double>(ms) / 1000.0);
  return out;
}

void add_lifecycle(simulation_report& r, world_driver& world, const config& cfg,
                   const node_handles& node, const metrics& stats) {
  for (auto& pool : cfg.pools) {
    auto counts = world.ask<ledger_counts>(node.ledgers.at(pool.name), atom::counts_v);
    r.runners_by_state.push_back({pool.name, counts ? *counts : ledger_counts{}});
  }
  for (auto action : {"idle_retired", "kept_busy", "orphan_tagged",
                      "orphan_terminated", "ghost_deleted", "bypassed"})
    r.reaper_actions.emplace_back(
      action, sum_where(stats, "ghscale_reaper_actions_total", "action", action));
  r.reaper_passes = stats.total("ghscale_reaper_passes_total");
  r.reaper_api_calls = stats.total("ghscale_reaper_api_calls_total");
  if (r.reaper_passes > 0)
    r.reaper_calls_per_pass = static_cast<double>(r.reaper_api_calls)
                              / static_cast<double>(r.reaper_passes);
}

/// Every kill_loop entry names a queue whose loops the node runs.
caf::error check_trace(const std::vector<trace_entry>& trace,
                       const loop_sampler& loops) {
  for (auto& entry : trace)
    if (entry.what == trace_entry::kind::kill_loop && !loops.knows(entry.queue))
      return caf::make_error(errc::invalid_config,
                             "trace: kill_loop names '" + entry.queue
                               + "', which no pool polls");
  return caf::none;
}

} // namespace

void inject(const trace_entry& entry, const embedded_world& world,
            const node_handles& node) {
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
      caf::anon_send(node.node, atom::inject_v, entry.child);
      break;
    case trace_entry::kind::kill_loop:
      caf::anon_send(node.loops, atom::inject_v, entry.queue);
      break;
    case trace_entry::kind::restart:
      break; // the simulation itself restarts the node
  }
}

bool simulation_report::ok() const {
  for (auto& p : peaks)
    if (p.peak > p.cap)
      return false;
  for (auto& l : loops)
    if (!replaced_in_time(l, revival_threshold_seconds))
      return false;
  return jobs_lost == 0 && duplicate_launches == 0 && ghosts_left == 0
         && orphans_left == 0;
}

namespace {

/// A SIGTERM and a restart: the node drains in virtual time (as long as its
/// drain takes, at most its budget), then a new node starts on the same
/// world, with nothing of the old one's memory.
caf::expected<node_handles> restart_node(world_driver& world, caf::actor_system& sys,
                                         const config& cfg, const embedded_world& w,
                                         const node_handles& old, metrics_ptr stats) {
  caf::anon_send(old.node, atom::drain_v);
  auto give_up = world.elapsed() + cfg.timeouts.drain + std::chrono::seconds(10);
  while (world.elapsed() < give_up
         && world.ask<node_status>(old.node, atom::status_v))
    world.run_until(world.elapsed() + std::chrono::milliseconds(100));
  caf::anon_send_exit(old.node, caf::exit_reason::user_shutdown);
  world.run_until(world.elapsed() + std::chrono::seconds(1));
  return spawn_node(sys, cfg, w.wiring, std::move(stats), cfg.simulation.seed + 1);
}

/// Jobs some pool takes: the others are unrouted, not lost.
std::set<std::string> routed_jobs(const config& cfg,
                                  const std::vector<trace_entry>& trace) {
  std::set<std::string> out;
  if (cfg.pools.empty())
    return out;
  // The simulated GitHub delivers every webhook to the first pool's queue.
  auto& queue = cfg.pools.front().queue;
  for (auto& entry : trace)
    if (entry.what == trace_entry::kind::job
        && route(cfg.pools, queue, entry.job.event.labels) != nullptr)
      out.insert(to_string(entry.job.event.key));
  return out;
}

} // namespace

caf::expected<simulation_report>
run_simulation(const config& cfg, const std::vector<trace_entry>& trace,
               const std::string& trace_name, const simulation_options& opts) {
  caf::actor_system_config sys_cfg;
  register_types(sys_cfg);
  sys_cfg.set("scheduler.policy", caf::atom("testing"));
  caf::actor_system sys{sys_cfg};
  auto stats = std::make_shared<metrics>();
  loop_sampler loops{cfg, opts.loop_sample_every};
  if (auto err = check_trace(trace, loops))
    return err;
  auto w = spawn_embedded_backends(sys, cfg, stats);
  if (!w)
    return w.error();
  auto node = spawn_node(sys, cfg, w->wiring, stats, cfg.simulation.seed);
  if (!node)
    return node.error();
  world_driver world{sys};
  simulation_report r;
  r.trace = trace_name;
  std::map<std::string, double> queued_at; // job key -> seconds
  for (auto& entry : trace) {
    loops.run_until(world, node->registry, entry.at);
    if (entry.what == trace_entry::kind::restart) {
      node = restart_node(world, sys, cfg, *w, *node, stats);
      if (!node)
        return node.error();
      ++r.node_restarts;
      continue;
    }
    if (entry.what == trace_entry::kind::job) {
      queued_at.emplace(to_string(entry.job.event.key),
                        std::chrono::duration<double>(entry.at).count());
      r.deliveries += 1 + entry.job.duplicates;
    }
    if (entry.what == trace_entry::kind::kill_loop)
      loops.killed(entry.queue);
    inject(entry, *w, *node);
  }
  r.jobs_seen = static_cast<int64_t>(queued_at.size());
  // Let the world settle: runners boot, jobs run, retries come back, loops
  // scale down, the reaper cleans up.
  auto last = trace.empty() ? caf::timespan{0} : trace.back().at;
  for (auto t = last + opts.check_every; t <= last + opts.horizon;
       t += opts.check_every) {
    loops.run_until(world, node->registry, t);
    if (world_is_quiet(world, *w, cfg, loops))
      break;
  }
  r.simulated_seconds = std::chrono::duration<double>(world.elapsed()).count();
  if (auto status = world.ask<node_status>(node->node, atom::status_v))
    for (auto& child : status->children)
      r.restarts += child.restarts;
  r.loops = loops.timelines();
  r.revival_threshold_seconds = std::chrono::duration<double>(
    cfg.poll_loops.stale_after + cfg.poll_loops.heartbeat).count();
  add_lifecycle(r, world, cfg, *node, *stats);
  // Ground truth from the simulated world.
  auto truth = look(world, *w);
  auto& github = truth.github;
  auto& cloud = truth.cloud;
  r.ghosts_left = truth.ghosts;
  r.orphans_left = truth.orphans;
  r.jobs_interrupted = github["jobs_interrupted"];
  r.spot_interrupted = cloud["spot_interrupted"];
  auto wait = waits(github);
  r.wait_samples = static_cast<int64_t>(wait.size());
  r.wait_p50 = percentile(wait, 0.50);
  r.wait_p95 = percentile(wait, 0.95);
  r.wait_p99 = percentile(wait, 0.99);
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
  // A job is lost when no runner ever took it, whatever the queues hold:
  // a message still queued or dead-lettered serves no one.
  auto routed = routed_jobs(cfg, trace);
  for (auto& [kind, n] : github)
    if (kind.rfind("never_started ", 0) == 0 && routed.count(kind.substr(14)) > 0)
      ++r.jobs_lost;
  r.jobs_still_queued = static_cast<int64_t>(still_queued.size());
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

namespace {

std::string fixed(double x) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(3);
  s << x;
  return s.str();
}

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (char c : text)
    out += c == '"' ? std::string{"\\\""} : std::string{c};
  return out + "\"";
}

std::string json_counts(const ledger_counts& c) {
  std::ostringstream out;
  out << "{\"requested\":" << c.requested << ",\"pending\":" << c.pending
      << ",\"ready\":" << c.ready << ",\"running\":" << c.running
      << ",\"completed\":" << c.completed << ",\"failed\":" << c.failed
      << ",\"orphaned\":" << c.orphaned << ",\"terminated\":" << c.terminated
      << "}";
  return out.str();
}

/// The issue-4 part of the report: loops, lifecycle, scale-down.
void render_lifecycle_json(std::ostream& out, const simulation_report& r) {
  out << ",\"loops\":{\"revival_threshold_seconds\":"
      << fixed(r.revival_threshold_seconds) << ",\"queues\":[";
  for (size_t i = 0; i < r.loops.size(); ++i) {
    auto& l = r.loops[i];
    out << (i ? "," : "") << "{\"queue\":" << json_string(l.queue)
        << ",\"min_loops\":" << l.min_loops << ",\"max_loops\":" << l.max_loops
        << ",\"min\":" << l.min << ",\"max\":" << l.max << ",\"last\":" << l.last
        << ",\"scaled_up\":" << l.scaled_up << ",\"scaled_down\":" << l.scaled_down
        << ",\"killed\":" << l.killed << ",\"revived\":" << l.revived
        << ",\"max_revival_seconds\":" << fixed(l.max_revival_seconds)
        << ",\"series\":[";
    for (size_t j = 0; j < l.series.size(); ++j)
      out << (j ? "," : "") << "[" << fixed(l.series[j].first) << ","
          << l.series[j].second << "]";
    out << "]}";
  }
  out << "]},\"runners_by_state\":{";
  for (size_t i = 0; i < r.runners_by_state.size(); ++i)
    out << (i ? "," : "") << json_string(r.runners_by_state[i].pool) << ":"
        << json_counts(r.runners_by_state[i].counts);
  out << "},\"reaper\":{\"passes\":" << r.reaper_passes
      << ",\"api_calls\":" << r.reaper_api_calls
      << ",\"api_calls_per_pass\":" << fixed(r.reaper_calls_per_pass)
      << ",\"actions\":{";
  for (size_t i = 0; i < r.reaper_actions.size(); ++i)
    out << (i ? "," : "") << json_string(r.reaper_actions[i].first) << ":"
        << r.reaper_actions[i].second;
  out << "}},\"spot_interrupted\":" << r.spot_interrupted
      << ",\"jobs_interrupted\":" << r.jobs_interrupted
      << ",\"ghosts_left\":" << r.ghosts_left
      << ",\"orphans_left\":" << r.orphans_left
      << ",\"time_to_start_seconds\":{\"samples\":" << r.wait_samples
      << ",\"p50\":" << fixed(r.wait_p50) << ",\"p95\":" << fixed(r.wait_p95)
      << ",\"p99\":" << fixed(r.wait_p99) << "}";
}

void render_lifecycle_text(std::ostream& out, const simulation_report& r) {
  for (auto& l : r.loops) {
    out << "poll loops              " << l.queue << ": min " << l.min << "  max "
        << l.max << "  last " << l.last << "  (bounds " << l.min_loops << ".."
        << l.max_loops << "; scaled up " << l.scaled_up << ", down "
        << l.scaled_down << ")\n"
        << "loops killed/revived    " << l.queue << ": " << l.killed << " / "
        << l.revived << ", longest revival " << fixed(l.max_revival_seconds)
        << " s of " << fixed(r.revival_threshold_seconds) << " s allowed"
        << (replaced_in_time(l, r.revival_threshold_seconds)
              ? ""
              : "  NOT REPLACED IN TIME")
        << "\n"
        << "loops over time         " << l.queue << ":";
    for (auto& [second, loops] : l.series)
      out << " " << static_cast<int64_t>(second) << "s=" << loops;
    out << "\n";
  }
  for (auto& p : r.runners_by_state) {
    auto& c = p.counts;
    out << "runners by state        " << p.pool << ": requested " << c.requested
        << ", pending " << c.pending << ", ready " << c.ready << ", running "
        << c.running << ", completed " << c.completed << ", failed " << c.failed
        << ", orphaned " << c.orphaned << ", terminated " << c.terminated << "\n";
  }
  out << "reaper actions         ";
  for (auto& [action, n] : r.reaper_actions)
    out << " " << action << " " << n;
  out << "\n"
      << "reaper API calls        " << r.reaper_api_calls << " in " << r.reaper_passes
      << " passes (" << fixed(r.reaper_calls_per_pass) << " a pass)\n"
      << "spot interruptions      " << r.spot_interrupted << " instances, "
      << r.jobs_interrupted << " running jobs failed\n"
      << "ghosts left             " << r.ghosts_left << "\n"
      << "orphans left            " << r.orphans_left << "\n"
      << "time-to-start (s)       p50 " << fixed(r.wait_p50) << "  p95 "
      << fixed(r.wait_p95) << "  p99 " << fixed(r.wait_p99) << "  ("
      << r.wait_samples << " jobs)\n";
}

} // namespace

std::string render_report(const simulation_report& r, bool json) {
  std::ostringstream out;
  if (json) {
    out << "{\"trace\":\"" << r.trace << "\",\"ok\":" << (r.ok() ? "true" : "false")
        << ",\"simulated_seconds\":" << fixed(r.simulated_seconds)
        << ",\"jobs_seen\":" << r.jobs_seen << ",\"deliveries\":" << r.deliveries
        << ",\"jobs_started\":" << r.jobs_started
        << ",\"jobs_completed\":" << r.jobs_completed
        << ",\"jobs_unrouted\":" << r.jobs_unrouted
        << ",\"jobs_dead_lettered\":" << r.jobs_dead_lettered
        << ",\"jobs_still_queued\":" << r.jobs_still_queued
        << ",\"jobs_lost\":" << r.jobs_lost
        << ",\"node_restarts\":" << r.node_restarts
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
        << ",\"p99\":" << fixed(r.latency_p99) << "}";
    render_lifecycle_json(out, r);
    out << ",\"api_calls\":{";
    for (size_t i = 0; i < r.api_calls.size(); ++i)
      out << (i ? "," : "") << json_string(r.api_calls[i].first) << ":"
          << r.api_calls[i].second;
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
      << "jobs still queued       " << r.jobs_still_queued << "\n"
      << "jobs lost               " << r.jobs_lost << "\n"
      << "node restarts           " << r.node_restarts << "\n"
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
      << r.latency_samples << " launches)\n";
  render_lifecycle_text(out, r);
  out << "API calls by kind:\n";
  for (auto& [kind, n] : r.api_calls)
    out << "  " << kind << "  " << n << "\n";
  out << "result                  " << (r.ok() ? "OK" : "FAILED") << "\n";
  return out.str();
}

} // namespace ghscale::scenario
