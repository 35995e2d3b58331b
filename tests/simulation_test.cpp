// `ghscale simulate` end to end: the shipped traces through the real actor
// graph in virtual time, judged by the simulated world's ground truth.
#include "bench/scenario/simulation.hpp"
#include "bench/scenario/trace.hpp"
#include "transport/config_file.hpp"

#include <gtest/gtest.h>

using namespace ghscale;
using namespace ghscale::scenario;

namespace {

config simulate_config() {
  auto cfg = load_config_file(GHSCALE_SOURCE_DIR "/conf/simulate.toml");
  EXPECT_TRUE(cfg) << describe(cfg.error());
  cfg->logging.level = "off";
  return *cfg;
}

simulation_report simulate(const config& cfg, const std::string& trace) {
  auto entries = load_trace_file(GHSCALE_SOURCE_DIR "/conf/traces/" + trace);
  EXPECT_TRUE(entries) << describe(entries.error());
  auto report = run_simulation(cfg, *entries, trace);
  EXPECT_TRUE(report) << describe(report.error());
  return *report;
}

int64_t calls_of(const simulation_report& r, const std::string& prefix) {
  int64_t n = 0;
  for (auto& [kind, count] : r.api_calls)
    if (kind.rfind(prefix, 0) == 0)
      n += count;
  return n;
}

} // namespace

TEST(Simulation, FaultInjectedMatrixStormLosesNothing) {
  auto r = simulate(simulate_config(), "matrix-storm.jsonl");
  EXPECT_EQ(r.jobs_lost, 0);
  EXPECT_EQ(r.duplicate_launches, 0);
  for (auto& p : r.peaks)
    EXPECT_LE(p.peak, p.cap) << p.pool;
  EXPECT_EQ(r.jobs_seen, 480);
  EXPECT_EQ(r.jobs_started + r.jobs_dead_lettered, r.jobs_seen);
  // The faults really happened and were absorbed.
  EXPECT_GT(r.deliveries, r.jobs_seen);       // duplicate deliveries ...
  EXPECT_GT(r.duplicates_suppressed, 0);      // ... were suppressed
  EXPECT_GT(r.messages_retried, 0);           // 5xx, partial fills
  EXPECT_EQ(r.restarts, 2);                   // launcher and scaler crashed
  EXPECT_GT(calls_of(r, "CreateFleet throttled"), 0);
  EXPECT_TRUE(r.ok());
}

TEST(Simulation, BurstOverTheCapWaitsInsteadOfOverLaunching) {
  auto r = simulate(simulate_config(), "burst-500.jsonl");
  EXPECT_EQ(r.jobs_lost, 0);
  EXPECT_EQ(r.duplicate_launches, 0);
  EXPECT_EQ(r.jobs_started, 500);
  EXPECT_EQ(r.runners_launched, 500);
  ASSERT_FALSE(r.peaks.empty());
  EXPECT_EQ(r.peaks.front().pool, "linux-x64");
  EXPECT_LE(r.peaks.front().peak, 100);
  // Batching: fewer fleet calls than runners, although after the first
  // wave capacity frees one completed job at a time.
  EXPECT_LT(calls_of(r, "CreateFleet"), r.runners_launched);
  EXPECT_EQ(calls_of(r, "generate_jit_config 201"), 500);
}

TEST(Simulation, SameSeedSameReport) {
  auto cfg = simulate_config();
  auto a = simulate(cfg, "matrix-storm.jsonl");
  auto b = simulate(cfg, "matrix-storm.jsonl");
  EXPECT_EQ(render_report(a, true), render_report(b, true));
}

TEST(Simulation, TraceErrorsNameTheLine) {
  auto bad = parse_trace("{\"at\":1,\"crash\":\"x\"}\n{\"at\":-1}\n", "t.jsonl");
  ASSERT_FALSE(bad);
  EXPECT_NE(describe(bad.error()).find("t.jsonl:2"), std::string::npos);
  bad = parse_trace("{\"at\":1,\"fault\":{\"kind\":\"meteor\"}}\n", "t.jsonl");
  ASSERT_FALSE(bad);
  EXPECT_NE(describe(bad.error()).find("unknown fault kind"), std::string::npos);
  bad = parse_trace("{\"at\":1,\"event\":{\"action\":\"queued\"}}\n", "t.jsonl");
  ASSERT_FALSE(bad);
  EXPECT_NE(describe(bad.error()).find("bad event"), std::string::npos);
}
