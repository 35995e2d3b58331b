// Events per second through poller -> scaler -> ledger -> fleet launcher ->
// installation client, on zero-latency backends (simulated EC2 and GitHub),
// with CAF's real multi-threaded scheduler, and the latency each event spends
// in ghscale beyond the deliberate batching window (receive to ack).
//
// The queue is an instrumented in-memory queue_actor: it hands out
// pre-generated `workflow_job` bodies and timestamps each message when the
// poller receives it and when the poller deletes it.
//
//   build/pipeline_bench [events] [runs]
#include "actors/ops/log.hpp"
#include "actors/ops/metrics.hpp"
#include "actors/node.hpp"
#include "actors/embedded/sim_cloud.hpp"
#include "actors/embedded/sim_github.hpp"
#include "messages/actors.hpp"
#include "transport/workflow_job.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

using namespace ghscale;
using bench_clock = std::chrono::steady_clock;

namespace {

/// What the instrumented queue records; read by main after the run.
struct queue_log {
  std::mutex mtx;
  std::unordered_map<std::string, bench_clock::time_point> handed_out;
  std::vector<double> latencies_us;
  size_t acked = 0;
  size_t retried = 0;
  size_t expected = 0;
  std::promise<void> all_acked;
};

struct bench_queue_state {
  std::vector<std::string> bodies;
  size_t next = 0;
  uint64_t receipts = 0;
  std::unordered_map<std::string, std::string> in_flight; // receipt -> body
  std::vector<caf::typed_response_promise<received_batch>> waiting;
  static inline const char* name = "bench_queue";
};

queue_actor::behavior_type
bench_queue(queue_actor::stateful_pointer<bench_queue_state> self,
            std::vector<std::string> bodies, std::shared_ptr<queue_log> log) {
  self->state.bodies = std::move(bodies);
  return {
    [=](atom::receive, receive_request req) -> caf::result<received_batch> {
      auto& st = self->state;
      if (st.next == st.bodies.size()) {
        // Nothing left: hold the long poll (released at shutdown).
        auto rp = self->make_response_promise<received_batch>();
        st.waiting.push_back(rp);
        return rp;
      }
      received_batch batch;
      auto now = bench_clock::now();
      std::lock_guard<std::mutex> guard{log->mtx};
      for (int32_t i = 0; i < req.max_messages && st.next < st.bodies.size(); ++i) {
        auto receipt = "r-" + std::to_string(++st.receipts);
        auto& body = st.bodies[st.next++];
        st.in_flight.emplace(receipt, body);
        log->handed_out.emplace(receipt, now);
        batch.messages.push_back(queue_message{receipt, receipt, body, 1, {}});
      }
      return batch;
    },
    [=](atom::remove, const std::vector<std::string>& receipts) {
      auto now = bench_clock::now();
      batch_result result;
      std::lock_guard<std::mutex> guard{log->mtx};
      for (auto& r : receipts) {
        self->state.in_flight.erase(r);
        auto i = log->handed_out.find(r);
        if (i != log->handed_out.end()) {
          log->latencies_us.push_back(
            std::chrono::duration<double, std::micro>(now - i->second).count());
          log->handed_out.erase(i);
        }
        result.succeeded.push_back(r);
        if (++log->acked == log->expected)
          log->all_acked.set_value();
      }
      return result;
    },
    [=](atom::visibility, const std::vector<visibility_change>& changes) {
      // A retry: the message goes back to the end of the queue.
      batch_result result;
      std::lock_guard<std::mutex> guard{log->mtx};
      for (auto& c : changes) {
        auto i = self->state.in_flight.find(c.receipt);
        if (i != self->state.in_flight.end()) {
          self->state.bodies.push_back(i->second);
          self->state.in_flight.erase(i);
        }
        log->handed_out.erase(c.receipt);
        ++log->retried;
        result.succeeded.push_back(c.receipt);
      }
      return result;
    },
    [=](atom::enqueue, const std::vector<outgoing_message>& msgs) {
      batch_result result;
      for (size_t i = 0; i < msgs.size(); ++i)
        result.succeeded.push_back(std::to_string(i));
      return result;
    },
    [=](atom::depth) {
      auto& st = self->state;
      return queue_depth{static_cast<int64_t>(st.bodies.size() - st.next),
                         static_cast<int64_t>(st.in_flight.size()), 0};
    },
  };
}

std::vector<std::string> make_bodies(size_t n) {
  std::vector<std::string> out;
  out.reserve(n);
  for (size_t i = 0; i < n; ++i) {
    job_event ev;
    ev.key = {static_cast<int64_t>(1'000'000 + i), 1};
    ev.run_id = static_cast<int64_t>(i / 10);
    ev.repository = {"acme", "svc", owner_type::organization};
    ev.installation_id = 1 + static_cast<int64_t>(i % 4);
    ev.labels = {"self-hosted", "linux", "x64"};
    out.push_back(to_webhook_payload(ev));
  }
  return out;
}

config bench_config(int32_t loops, caf::timespan window, int32_t max_batch) {
  config cfg;
  queue_config q;
  q.name = "jobs";
  q.dead_letter = "jobs-dlq";
  q.min_loops = q.max_loops = loops;
  queue_config dlq;
  dlq.name = "jobs-dlq";
  cfg.queues = {q, dlq};
  github_app_config app;
  app.name = "bench";
  app.app_id = 1;
  app.max_concurrency = 100;
  app.writes_per_minute = 1'000'000'000;
  cfg.github_apps = {app};
  pool_config pool;
  pool.name = "linux";
  pool.queue = "jobs";
  pool.github_app = "bench";
  pool.labels = {"self-hosted", "linux", "x64"};
  pool.max_runners = 1'000'000'000;
  pool.instance_types = {"m5.large"};
  pool.subnets = {"subnet-a"};
  pool.launch_template = "lt-bench";
  pool.capacity = capacity_type::on_demand;
  pool.job_queued_check = false;
  cfg.pools = {pool};
  cfg.scaler.window = window;
  cfg.scaler.max_batch = max_batch;
  // Zero-latency backends that never throttle and never boot runners.
  cfg.simulation.boot_delay = std::chrono::hours(24);
  cfg.simulation.ec2_fleet_burst = 1'000'000'000;
  cfg.simulation.ec2_fleet_refill = 1e9;
  cfg.simulation.github_hourly_limit = 1'000'000'000'000;
  cfg.logging.level = "error";
  return cfg;
}

struct run_result {
  double events_per_second = 0;
  double p50_us = 0;
  double p99_us = 0;
  size_t retried = 0;
};

double pct(std::vector<double>& xs, double p) {
  if (xs.empty())
    return 0;
  auto k = std::min(xs.size() - 1, static_cast<size_t>(p * static_cast<double>(xs.size())));
  std::nth_element(xs.begin(), xs.begin() + static_cast<long>(k), xs.end());
  return xs[k];
}

run_result run_once(size_t events, int32_t loops, caf::timespan window,
                    int32_t max_batch) {
  auto cfg = bench_config(loops, window, max_batch);
  caf::actor_system_config sys_cfg;
  register_types(sys_cfg);
  if (auto threads = std::getenv("BENCH_THREADS"))
    sys_cfg.set("scheduler.max-threads", std::atoi(threads));
  caf::actor_system sys{sys_cfg};
  auto stats = std::make_shared<metrics>();
  auto log = std::make_shared<queue_log>();
  log->expected = events;
  auto done = log->all_acked.get_future();
  auto github = sys.spawn(sim_github, cfg.simulation, stats);
  auto cloud = sys.spawn(sim_cloud, cfg.simulation, cfg.aws.parameter_prefix,
                         github, stats);
  backends b;
  auto bodies = make_bodies(events);
  auto start = bench_clock::now();
  b.queues["jobs"] = sys.spawn(bench_queue, std::move(bodies), log);
  b.queues["jobs-dlq"] = sys.spawn(bench_queue, std::vector<std::string>{}, log);
  b.ec2 = cloud;
  b.ssm = cloud;
  b.github["bench"] = github;
  b.jwt["bench"] = [](caf::timespan) -> caf::expected<secret_string> {
    return secret_string{"bench-jwt"};
  };
  auto node = spawn_node(sys, cfg, b, stats, cfg.simulation.seed);
  if (!node) {
    std::fprintf(stderr, "spawn_node: %s\n", describe(node.error()).c_str());
    std::exit(2);
  }
  done.wait();
  auto elapsed = std::chrono::duration<double>(bench_clock::now() - start).count();
  run_result r;
  r.events_per_second = static_cast<double>(events) / elapsed;
  {
    std::lock_guard<std::mutex> guard{log->mtx};
    r.p50_us = pct(log->latencies_us, 0.50);
    r.p99_us = pct(log->latencies_us, 0.99);
    r.retried = log->retried;
  }
  caf::anon_send_exit(node->node, caf::exit_reason::user_shutdown);
  for (auto& [name, q] : b.queues)
    caf::anon_send_exit(q, caf::exit_reason::kill);
  caf::anon_send_exit(github, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(cloud, caf::exit_reason::user_shutdown);
  return r;
}

} // namespace

int main(int argc, char** argv) {
  size_t events = argc > 1 ? std::stoul(argv[1]) : 200'000;
  int runs = argc > 2 ? std::stoi(argv[2]) : 3;
  ghscale::log::configure(std::getenv("GHSCALE_LOG") ? std::getenv("GHSCALE_LOG") : "error", "logfmt");
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  std::printf("pipeline_bench: %zu events per run, median of %d runs, "
              "zero-latency backends, %u hardware threads\n",
              events, runs, std::thread::hardware_concurrency());
  std::printf("%-8s %-10s %-10s %14s %12s %12s %8s\n", "pollers", "window",
              "max_batch", "events/s", "p50 (us)", "p99 (us)", "retried");
  struct shape {
    int32_t loops;
    caf::timespan window;
    int32_t max_batch;
  };
  using std::chrono::milliseconds;
  // Each poller waits for a batch's outcomes before it receives the next,
  // so throughput grows with pollers; a window adds its length per batch.
  for (auto s : {shape{1, milliseconds(0), 10}, shape{4, milliseconds(0), 10},
                 shape{16, milliseconds(0), 10}, shape{64, milliseconds(0), 10},
                 shape{64, milliseconds(5), 100}, shape{64, milliseconds(5), 400}}) {
    std::vector<run_result> results;
    for (int i = 0; i < runs; ++i)
      results.push_back(run_once(events, s.loops, s.window, s.max_batch));
    std::sort(results.begin(), results.end(), [](auto& a, auto& b) {
      return a.events_per_second < b.events_per_second;
    });
    auto& med = results[results.size() / 2];
    std::printf("%-8d %-10s %-10d %14.0f %12.1f %12.1f %8zu\n", s.loops,
                (std::to_string(s.window.count() / 1'000'000) + "ms").c_str(),
                s.max_batch, med.events_per_second, med.p50_us, med.p99_us,
                med.retried);
  }
  return 0;
}
