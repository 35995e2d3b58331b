// A property of `ghscale simulate`'s real actor graph, over random workloads
// (seeded, so a failure names the seed that reproduces it): bursts under
// GitHub's secondary write limit, visibility timeouts shorter than the wait
// for a registration, duplicate deliveries, GitHub 5xx and partial
// CreateFleet fills. Whatever the draw, every job ends served exactly once:
// a runner took it (none lost, whatever the queues hold; a message of a
// served job may still reach the dead-letter queue when heavy faults use up
// its receives), no runner was launched for nothing, no pool went over its
// cap. Restarts are left to the shipped budget-storm trace and to
// tests/budget_peer_test.py: which job a booted runner was launched for does
// not outlive the process yet (README, "Known limits").
#include "actors/embedded/simulation.hpp"
#include "actors/embedded/trace.hpp"
#include "transport/config_file.hpp"
#include "transport/workflow_job.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

using namespace ghscale;
using namespace ghscale::scenario;

namespace {

/// One random workload and the world it runs in.
struct workload {
  uint64_t seed = 0;
  int jobs = 0;
  double spread_s = 0;       // the burst arrives within this
  double duplicate_rate = 0; // share of jobs delivered twice
  int writes_per_minute = 0; // GitHub's limit and ghscale's (0: none)
  int visibility_s = 30;
  int max_loops = 1;
  double github_5xx = 0;     // rate of GitHub calls answered 5xx, for 60 s
  double partial_fill = 1;   // share of each CreateFleet filled, for 60 s
  double second_burst_s = -1; // a second, smaller burst (-1: none)
};

workload draw(uint64_t seed) {
  std::mt19937_64 rng{seed};
  auto uniform = [&](double lo, double hi) {
    return std::uniform_real_distribution<double>{lo, hi}(rng);
  };
  auto pick = [&](std::vector<int> xs) {
    return xs[std::uniform_int_distribution<size_t>{0, xs.size() - 1}(rng)];
  };
  workload w;
  w.seed = seed;
  w.jobs = pick({20, 40, 60, 90, 120});
  w.spread_s = pick({0, 5, 30, 90});
  w.duplicate_rate = uniform(0, 0.4);
  w.writes_per_minute = pick({0, 20, 30, 60});
  w.visibility_s = pick({10, 30, 60, 300});
  w.max_loops = pick({1, 2, 4});
  w.github_5xx = uniform(0, 1) < 0.5 ? uniform(0.05, 0.4) : 0;
  w.partial_fill = uniform(0, 1) < 0.3 ? uniform(0.4, 0.9) : 1;
  w.second_burst_s = uniform(0, 1) < 0.3 ? uniform(60, 400) : -1;
  return w;
}

std::string describe(const workload& w) {
  std::ostringstream out;
  out << "seed " << w.seed << ": " << w.jobs << " jobs within " << w.spread_s
      << " s, duplicates " << w.duplicate_rate << ", writes/min "
      << w.writes_per_minute << ", visibility " << w.visibility_s
      << " s, loops <= " << w.max_loops << ", 5xx " << w.github_5xx
      << ", fill " << w.partial_fill << ", second burst at " << w.second_burst_s << " s";
  return out.str();
}

std::string config_text(const workload& w) {
  std::ostringstream toml;
  toml << "[aws]\nbackend = \"embedded\"\n"
       << "[[queues]]\nname = \"jobs\"\nbackend = \"embedded\"\n"
       << "dead_letter = \"jobs-dlq\"\nvisibility_timeout = \"" << w.visibility_s
       << "s\"\nmax_receive_count = 5\nmin_loops = 1\nmax_loops = "
       << w.max_loops << "\nscale_up_depth = 20\nscale_down_depth = 5\n"
       << "[[queues]]\nname = \"jobs-dlq\"\nbackend = \"embedded\"\n"
       << "[[github_apps]]\nname = \"app\"\nbackend = \"embedded\"\n";
  if (w.writes_per_minute > 0)
    toml << "writes_per_minute = " << w.writes_per_minute << "\n";
  toml << "[[pools]]\nname = \"x64\"\nqueue = \"jobs\"\ngithub_app = \"app\"\n"
       << "labels = [\"self-hosted\", \"linux\", \"x64\"]\nmatch = \"subset\"\n"
       << "max_runners = 400\ninstance_types = [\"m5.large\", \"c5.large\"]\n"
       << "on_demand_failover = [\"InsufficientInstanceCapacity\"]\n"
       << "[poll_loops]\nsample_every = \"10s\"\n"
       << "[simulation]\nseed = " << w.seed << "\nboot_delay = \"30s\"\n"
       << "github_writes_per_minute = " << w.writes_per_minute << "\n"
       << "[logging]\nlevel = \"off\"\n";
  return toml.str();
}

config config_of(const workload& w) {
  auto cfg = parse_config(config_text(w), "<property " + std::to_string(w.seed) + ">");
  EXPECT_TRUE(cfg) << ghscale::describe(cfg.error());
  return cfg ? *cfg : config{};
}

/// The workload as a trace file's text (conf/traces/generate.py documents
/// the format), so that a failing draw can be written out and replayed
/// with `ghscale simulate`.
std::string trace_text(const workload& w) {
  std::mt19937_64 rng{w.seed ^ 0x5eedULL};
  std::uniform_real_distribution<double> unit{0, 1};
  std::ostringstream out;
  out.precision(6);
  out << std::fixed;
  auto add_jobs = [&](double start, int count, int64_t first_id) {
    for (int i = 0; i < count; ++i) {
      job_event ev;
      ev.key = job_key{first_id + i, 1};
      ev.run_id = first_id / 10 + i / 20;
      ev.repository = repository_ref{"acme", "svc-" + std::to_string(i % 4),
                                     owner_type::organization};
      ev.installation_id = 4242;
      ev.labels = {"self-hosted", "linux", "x64"};
      auto at = start + unit(rng) * w.spread_s;
      auto run_for = 60 + unit(rng) * 180;
      auto duplicates = unit(rng) < w.duplicate_rate ? 1 : 0;
      out << "{\"at\":" << at << ",\"event\":" << to_webhook_payload(ev)
          << ",\"run_for\":" << run_for << ",\"duplicates\":" << duplicates << "}\n";
    }
  };
  add_jobs(0, w.jobs, 7'000'000);
  if (w.second_burst_s >= 0)
    add_jobs(w.second_burst_s, w.jobs / 2, 8'000'000);
  auto fault = [&](double at, const char* kind, double rate) {
    out << "{\"at\":" << at << ",\"fault\":{\"kind\":\"" << kind
        << "\",\"rate\":" << rate << ",\"duration\":60}}\n";
  };
  if (w.github_5xx > 0)
    fault(w.spread_s / 2, "github_5xx", w.github_5xx);
  if (w.partial_fill < 1)
    fault(1, "ec2_partial", w.partial_fill);
  return out.str();
}

} // namespace

TEST(SimulationProperty, EveryJobIsServedExactlyOnce) {
  // GHSCALE_PROPERTY_DRAWS=N draws more (or fewer) than CI's 60.
  auto more = std::getenv("GHSCALE_PROPERTY_DRAWS");
  uint64_t draws = more != nullptr ? std::strtoull(more, nullptr, 10) : 60;
  int limited = 0;
  int faulted = 0;
  // GHSCALE_PROPERTY_DUMP=DIR writes each draw's trace and configuration
  // there, to replay one with `ghscale simulate --config --trace`.
  auto dump = std::getenv("GHSCALE_PROPERTY_DUMP");
  for (uint64_t seed = 1; seed <= draws; ++seed) {
    auto w = draw(seed);
    auto text = trace_text(w);
    if (dump != nullptr) {
      auto base = std::string{dump} + "/property-" + std::to_string(seed);
      std::ofstream{base + ".jsonl"} << text;
      std::ofstream{base + ".toml"} << config_text(w);
    }
    auto trace = parse_trace(text, "<property " + std::to_string(seed) + ">");
    ASSERT_TRUE(trace) << ghscale::describe(trace.error());
    auto r = run_simulation(config_of(w), *trace, "property");
    ASSERT_TRUE(r) << describe(w) << ": " << ghscale::describe(r.error());
    auto jobs = w.jobs + (w.second_burst_s >= 0 ? w.jobs / 2 : 0);
    EXPECT_EQ(r->jobs_seen, jobs) << describe(w);
    EXPECT_EQ(r->jobs_started, jobs) << describe(w);
    EXPECT_EQ(r->jobs_lost, 0) << describe(w);
    EXPECT_EQ(r->duplicate_launches, 0) << describe(w);
    EXPECT_TRUE(r->ok()) << describe(w) << "\n" << render_report(*r, false);
    limited += w.writes_per_minute > 0 ? 1 : 0;
    faulted += w.github_5xx > 0 || w.partial_fill < 1 ? 1 : 0;
  }
  // The draws did put the guarantees to the test.
  EXPECT_GT(limited, draws / 3);
  EXPECT_GT(faulted, draws / 3);
}
