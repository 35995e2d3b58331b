// `ghscale simulate` end to end: the shipped traces through the real actor
// graph in virtual time, judged by the simulated world's ground truth.
#include "actors/embedded/simulation.hpp"
#include "actors/embedded/trace.hpp"
#include "transport/config_file.hpp"

#include <gtest/gtest.h>

using namespace ghscale;
using namespace ghscale::scenario;

namespace {

config load_quiet(const std::string& file) {
  auto cfg = load_config_file(GHSCALE_SOURCE_DIR "/conf/" + file);
  EXPECT_TRUE(cfg) << describe(cfg.error());
  cfg->logging.level = "off";
  return *cfg;
}

config simulate_config() {
  return load_quiet("simulate.toml");
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
  auto chaos = load_quiet("simulate-chaos-spot.toml");
  EXPECT_EQ(render_report(simulate(chaos, "chaos-spot.jsonl"), true),
            render_report(simulate(chaos, "chaos-spot.jsonl"), true));
}

TEST(Simulation, ReportFailsOnLateLoopsGhostsAndOrphans) {
  simulation_report r;
  r.revival_threshold_seconds = 45;
  loop_timeline loops;
  loops.queue = "jobs";
  loops.killed = 2;
  loops.revived = 2;
  loops.max_revival_seconds = 45;
  r.loops = {loops};
  EXPECT_TRUE(r.ok());
  r.loops[0].revived = 1; // one killed loop never came back
  EXPECT_FALSE(r.ok());
  EXPECT_NE(render_report(r, false).find("NOT REPLACED IN TIME"), std::string::npos);
  r.loops[0].revived = 3; // a stale one was replaced too, but one was late
  r.loops[0].max_revival_seconds = 45.5;
  EXPECT_FALSE(r.ok());
  r.loops[0].max_revival_seconds = 0;
  EXPECT_TRUE(r.ok());
  r.ghosts_left = 1;
  EXPECT_FALSE(r.ok());
  r.ghosts_left = 0;
  r.orphans_left = 1;
  EXPECT_FALSE(r.ok());
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
  bad = parse_trace("{\"at\":1,\"kill_loop\":3}\n", "t.jsonl");
  ASSERT_FALSE(bad);
  EXPECT_NE(describe(bad.error()).find("\"kill_loop\""), std::string::npos);
}

TEST(Simulation, TraceKillsLoopsAndInterruptsSpot) {
  auto entries = parse_trace(
    "{\"at\":7.5,\"kill_loop\":\"jobs\"}\n"
    "{\"at\":3,\"fault\":{\"kind\":\"spot_interruption\",\"rate\":0.15,"
    "\"instance_type\":\"m5.large\"}}\n",
    "t.jsonl");
  ASSERT_TRUE(entries) << describe(entries.error());
  ASSERT_EQ(entries->size(), 2u);
  auto& spot = (*entries)[0];
  EXPECT_EQ(spot.what, trace_entry::kind::fault);
  EXPECT_EQ(spot.at, std::chrono::seconds(3));
  EXPECT_EQ(spot.fault.kind, "spot_interruption");
  EXPECT_EQ(spot.fault.instance_type, "m5.large");
  EXPECT_DOUBLE_EQ(spot.fault.rate, 0.15);
  auto& kill = (*entries)[1];
  EXPECT_EQ(kill.what, trace_entry::kind::kill_loop);
  EXPECT_EQ(kill.at, std::chrono::milliseconds(7500));
  EXPECT_EQ(kill.queue, "jobs");
}

TEST(Simulation, KillingTheLoopsOfAnUnpolledQueueIsRefused) {
  auto entries = parse_trace("{\"at\":1,\"kill_loop\":\"jobs-dlq\"}\n", "t.jsonl");
  ASSERT_TRUE(entries);
  auto report = run_simulation(simulate_config(), *entries, "t.jsonl");
  ASSERT_FALSE(report);
  EXPECT_EQ(describe(report.error()),
            "invalid_config: trace: kill_loop names 'jobs-dlq', which no pool polls");
}

TEST(Simulation, ChaosSpotLosesNothingAndLeavesNothingBehind) {
  auto r = simulate(load_quiet("simulate-chaos-spot.toml"), "chaos-spot.jsonl");
  EXPECT_EQ(r.jobs_lost, 0);
  EXPECT_EQ(r.duplicate_launches, 0);
  for (auto& p : r.peaks)
    EXPECT_LE(p.peak, p.cap) << p.pool;
  EXPECT_EQ(r.jobs_started + r.jobs_dead_lettered, r.jobs_seen);
  // Every killed loop was replaced within the threshold ...
  ASSERT_EQ(r.loops.size(), 1u);
  auto& loops = r.loops.front();
  EXPECT_EQ(loops.queue, "jobs");
  EXPECT_EQ(loops.killed, 14);
  EXPECT_GE(loops.revived, loops.killed);
  EXPECT_LE(loops.max_revival_seconds, r.revival_threshold_seconds);
  EXPECT_DOUBLE_EQ(r.revival_threshold_seconds, 45.0);
  EXPECT_EQ(loops.min, loops.min_loops);
  // ... and the loops followed the burst up and came back down.
  EXPECT_GT(loops.scaled_up, 0);
  EXPECT_GT(loops.max, loops.min_loops);
  EXPECT_LE(loops.max, loops.max_loops);
  EXPECT_GT(loops.scaled_down, 0);
  EXPECT_EQ(loops.last, loops.min_loops);
  ASSERT_GT(loops.series.size(), 2u);
  // Spot instances were reclaimed, some of them under a running job, and
  // nothing was left behind for the reaper.
  EXPECT_GT(r.spot_interrupted, 0);
  EXPECT_GT(r.jobs_interrupted, 0);
  EXPECT_EQ(r.ghosts_left, 0);
  EXPECT_EQ(r.orphans_left, 0);
  EXPECT_GT(r.reaper_passes, 0);
  EXPECT_GT(r.reaper_api_calls, 0);
  ASSERT_EQ(r.wait_samples, r.jobs_started);
  EXPECT_LE(r.wait_p50, r.wait_p95);
  EXPECT_LE(r.wait_p95, r.wait_p99);
  ASSERT_EQ(r.runners_by_state.size(), 2u);
  for (auto& pool : r.runners_by_state)
    EXPECT_EQ(pool.counts.active(), 0) << pool.pool;
  EXPECT_TRUE(r.ok()) << render_report(r, false);
}
