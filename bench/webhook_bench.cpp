// Webhook ingress throughput on loopback: signed `workflow_job` queued
// deliveries through the ops server (transport/http_server with the shipped
// thread count, then the delivery relay) into an embedded queue, in memory and durable (SQLite, WAL,
// synchronous=FULL as shipped: every accepted delivery is fsynced before its
// 202). N client threads, each with one keep-alive connection and
// TCP_NODELAY, send distinct jobs back to back. After each run the queue is
// drained (receive 10, delete the batch, until empty) to time the dequeue
// side. Every row is the median of 3 runs by throughput, each run on a fresh
// queue (and database file).
//
// usage: webhook_bench [DELIVERIES [DIRECTORY]]
//   DELIVERIES per run (default 5000); DIRECTORY for the databases (default:
//   a new directory under the system's temporary directory, removed after).

#include "transport/httplib.hpp"

#include "actors/embedded/embedded_queue.hpp"
#include "actors/ops/log.hpp"
#include "actors/ops/metrics.hpp"
#include "actors/ops/ops_server.hpp"
#include "messages/actors.hpp"
#include "transport/digest.hpp"
#include "transport/workflow_job.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

using bench_clock = std::chrono::steady_clock;

constexpr int runs = 3;
constexpr int client_counts[] = {1, 4, 16};
const std::string secret = "webhook-bench-secret";
/// Only there to turn a hang into a failure.
constexpr auto guard = 30s;

struct run_result {
  double accepted_per_second = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  /// Answers other than 202, by status ("error" for no answer at all).
  std::map<std::string, int> failures;
  double dequeue_per_second = 0;
};

[[noreturn]] void fail(const std::string& what, const caf::error& err) {
  std::fprintf(stderr, "webhook_bench: %s: %s\n", what.c_str(), describe(err).c_str());
  std::exit(1);
}

double seconds_since(bench_clock::time_point start) {
  return std::chrono::duration<double>(bench_clock::now() - start).count();
}

double percentile(const std::vector<double>& sorted, double p) {
  auto index = static_cast<size_t>(p * static_cast<double>(sorted.size()));
  return sorted[std::min(index, sorted.size() - 1)];
}

/// One signed delivery, built before the clock starts.
struct delivery {
  std::string body;
  httplib::Headers headers;
};

std::vector<delivery> make_deliveries(int64_t first_job, int count) {
  std::vector<delivery> out;
  out.reserve(static_cast<size_t>(count));
  for (int i = 0; i < count; ++i) {
    job_event ev;
    ev.key = job_key{first_job + i, 1};
    ev.run_id = 77;
    ev.repository = repository_ref{"octo-org", "bench", owner_type::organization};
    ev.installation_id = 4242;
    ev.labels = {"self-hosted", "linux", "x64"};
    delivery d;
    d.body = to_webhook_payload(ev);
    d.headers = {{"X-GitHub-Event", "workflow_job"},
                 {"X-GitHub-Delivery", random_hex(16)},
                 {"X-Hub-Signature-256", "sha256=" + hex(hmac_sha256(secret, d.body))}};
    out.push_back(std::move(d));
  }
  return out;
}

/// What the client threads of one run share.
struct load {
  const std::vector<delivery>& deliveries;
  std::atomic<size_t> next{0};
  std::mutex lock; // guards the two below
  std::vector<double> latencies_ms;
  std::map<std::string, int> failures;
};

/// One client: takes the next delivery until none is left, each on its one
/// keep-alive connection.
void send_deliveries(load& st, uint16_t port) {
  httplib::Client cli{"127.0.0.1", port};
  cli.set_keep_alive(true);
  cli.set_tcp_nodelay(true); // else Nagle holds the body back 40 ms
  cli.set_read_timeout(guard);
  std::vector<double> latencies;
  std::map<std::string, int> failures;
  for (size_t i = st.next++; i < st.deliveries.size(); i = st.next++) {
    const auto& d = st.deliveries[i];
    auto sent_at = bench_clock::now();
    auto res = cli.Post("/webhook", d.headers, d.body, "application/json");
    latencies.push_back(seconds_since(sent_at) * 1000.0);
    if (!res)
      ++failures["error " + httplib::to_string(res.error())];
    else if (res->status != 202)
      ++failures[std::to_string(res->status)];
  }
  std::lock_guard<std::mutex> guarded{st.lock};
  st.latencies_ms.insert(st.latencies_ms.end(), latencies.begin(), latencies.end());
  for (auto& [what, n] : failures)
    st.failures[what] += n;
}

/// Receives 10 and deletes them, until the queue is empty; messages/s.
double drain(const queue_actor& queue, int expected) {
  auto call = caf::make_function_view(queue, caf::duration{guard});
  int taken = 0;
  auto start = bench_clock::now();
  for (;;) {
    auto got = call(atom::receive_v, receive_request{10, 0s, 30s});
    if (!got)
      fail("receive", got.error());
    if (got->messages.empty())
      break;
    std::vector<std::string> receipts;
    for (auto& m : got->messages)
      receipts.push_back(m.receipt);
    auto removed = call(atom::remove_v, std::move(receipts));
    if (!removed)
      fail("delete", removed.error());
    if (!removed->failed.empty())
      fail("delete", caf::make_error(errc::backend_failure, removed->failed.front().message));
    taken += static_cast<int>(got->messages.size());
  }
  auto elapsed = seconds_since(start);
  if (taken != expected)
    std::fprintf(stderr, "webhook_bench: drained %d messages, %d were accepted\n",
                 taken, expected);
  return taken / elapsed;
}

ops_server_setup server_setup(const queue_actor& queue) {
  ops_server_setup setup;
  setup.cfg.listen = "127.0.0.1:0";
  setup.cfg.webhook_queue = "jobs";
  setup.secrets = {secret_string{secret}};
  setup.webhook_queue = queue;
  return setup;
}

/// One run on a fresh queue: the deliveries over HTTP, then the drain.
run_result run_once(caf::actor_system& sys, const queue_config& cfg,
                    const std::vector<delivery>& deliveries, int clients) {
  auto stats = std::make_shared<metrics>();
  auto queue = spawn_embedded_queue(sys, cfg, queue_actor{}, stats);
  if (!queue)
    fail("queue " + cfg.storage, queue.error());
  auto server = start_ops_server(sys, server_setup(*queue), stats);
  if (!server)
    fail("ops server", server.error());
  load st{deliveries, {}, {}, {}, {}};
  st.latencies_ms.reserve(deliveries.size());
  std::vector<std::thread> threads;
  auto start = bench_clock::now();
  for (int i = 0; i < clients; ++i)
    threads.emplace_back(send_deliveries, std::ref(st), (*server)->port());
  for (auto& t : threads)
    t.join();
  auto elapsed = seconds_since(start);
  server->reset(); // no delivery in progress while the queue goes
  run_result out;
  int failed = 0;
  for (auto& [what, n] : st.failures)
    failed += n;
  int accepted = static_cast<int>(deliveries.size()) - failed;
  out.accepted_per_second = accepted / elapsed;
  std::sort(st.latencies_ms.begin(), st.latencies_ms.end());
  out.p50_ms = percentile(st.latencies_ms, 0.50);
  out.p99_ms = percentile(st.latencies_ms, 0.99);
  out.failures = std::move(st.failures);
  out.dequeue_per_second = drain(*queue, accepted);
  caf::anon_send_exit(*queue, caf::exit_reason::user_shutdown);
  return out;
}

std::string describe_failures(const std::map<std::string, int>& failures) {
  if (failures.empty())
    return "0";
  std::string out;
  for (auto& [what, n] : failures)
    out += (out.empty() ? "" : ", ") + std::to_string(n) + " x " + what;
  return out;
}

double median(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  return xs[xs.size() / 2];
}

struct variant {
  const char* name;
  bool durable;
};

} // namespace

int main(int argc, char** argv) {
  int count = argc > 1 ? std::atoi(argv[1]) : 5000;
  if (count <= 0) {
    std::fprintf(stderr, "usage: webhook_bench [DELIVERIES (> 0) [DIRECTORY]]\n");
    return 2;
  }
  bool own_directory = argc <= 2;
  std::string dir;
  if (own_directory) {
    auto pattern = (std::filesystem::temp_directory_path() / "webhook-bench-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      std::perror("webhook_bench: mkdtemp");
      return 1;
    }
    dir = pattern;
  } else {
    dir = argv[2];
  }
  log::configure("warn", "logfmt"); // not a line per delivery or server start
  {
    caf::actor_system_config sys_cfg;
    register_types(sys_cfg);
    caf::actor_system sys{sys_cfg};
    const variant variants[] = {{"in memory", false},
                                {"durable, synchronous=FULL", true}};
    std::printf("webhook_bench: %d signed workflow_job deliveries per run over loopback "
                "HTTP (keep-alive, TCP_NODELAY), %d server threads, median of %d runs "
                "by throughput; databases in %s\n\n",
                count, server_config{}.threads, runs, dir.c_str());
    std::printf("| queue | clients | accepted/s | p50 ms | p99 ms | failed | "
                "dequeue (receive 10 + delete) msg/s |\n");
    std::printf("|---|---|---|---|---|---|---|\n");
    int64_t next_job = 1;
    int file = 0;
    for (const auto& v : variants) {
      for (int clients : client_counts) {
        std::vector<run_result> results;
        std::vector<double> dequeue;
        for (int run = 0; run < runs; ++run) {
          queue_config cfg;
          cfg.name = "jobs";
          if (v.durable)
            cfg.storage = dir + "/jobs-" + std::to_string(++file) + ".db";
          auto deliveries = make_deliveries(next_job, count);
          next_job += count;
          results.push_back(run_once(sys, cfg, deliveries, clients));
          dequeue.push_back(results.back().dequeue_per_second);
        }
        std::sort(results.begin(), results.end(),
                  [](const run_result& a, const run_result& b) {
                    return a.accepted_per_second < b.accepted_per_second;
                  });
        const auto& mid = results[runs / 2];
        std::printf("| %s | %d | %.0f | %.2f | %.2f | %s | %.0f |\n", v.name, clients,
                    mid.accepted_per_second, mid.p50_ms, mid.p99_ms,
                    describe_failures(mid.failures).c_str(), median(dequeue));
        std::fflush(stdout);
      }
    }
    sys.await_all_actors_done(); // each queue closes its database as it exits
  }
  if (own_directory)
    std::filesystem::remove_all(dir);
  return 0;
}
