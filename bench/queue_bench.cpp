// Enqueue and dequeue (receive + delete) rates of the embedded queue: in
// memory, and durable on SQLite with synchronous=FULL (every commit fsynced,
// what ghscale uses) and NORMAL (for comparison), in batches of 1 and 10.
// One client sends each call after the answer to the previous one, as the
// webhook and a poll loop do. Medians of 3 runs, each on a fresh file.
//
// usage: queue_bench [MESSAGES [DIRECTORY]]
//   MESSAGES per run (default 2000); DIRECTORY for the databases (default:
//   a new directory under the system's temporary directory, removed after).
#include "actors/embedded/embedded_queue.hpp"
#include "actors/ops/log.hpp"
#include "actors/ops/metrics.hpp"
#include "messages/actors.hpp"
#include "transport/wall_clock.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

using namespace ghscale;
using namespace std::chrono_literals;

namespace {

constexpr int runs = 3;

struct variant {
  const char* name;
  std::optional<store_sync> sync; // nullopt: in memory
};

struct rates {
  double enqueue = 0; // messages per second
  double dequeue = 0;
};

[[noreturn]] void fail(const std::string& what, const caf::error& err) {
  std::fprintf(stderr, "queue_bench: %s: %s\n", what.c_str(), describe(err).c_str());
  std::exit(1);
}

queue_actor spawn_queue(caf::actor_system& sys, const variant& v,
                        const std::string& path) {
  queue_config cfg;
  cfg.name = "bench";
  auto stats = std::make_shared<metrics>();
  if (!v.sync)
    return sys.spawn(embedded_queue, cfg, queue_actor{}, stats);
  cfg.storage = path;
  clock_bridge wall{wall_now(), sys.clock().now().time_since_epoch()};
  auto recovered = recover_queue(cfg, wall, *v.sync);
  if (!recovered)
    fail("open " + path, recovered.error());
  return sys.spawn(durable_embedded_queue, cfg, queue_actor{}, stats,
                   std::move(*recovered));
}

double per_second(int messages, std::chrono::steady_clock::duration elapsed) {
  return messages / std::chrono::duration<double>(elapsed).count();
}

/// Sends `messages` in batches of `batch`, then receives and deletes them all.
rates measure(const queue_actor& q, int messages, int32_t batch) {
  auto call = caf::make_function_view(q, caf::duration{30s});
  std::string body(1024, 'x'); // about the size of a workflow_job event
  std::vector<outgoing_message> entries(static_cast<size_t>(batch), {body, 0s});
  rates out;
  auto start = std::chrono::steady_clock::now();
  for (int sent = 0; sent < messages; sent += batch)
    if (auto res = call(atom::enqueue_v, entries); !res)
      fail("enqueue", res.error());
  out.enqueue = per_second(messages, std::chrono::steady_clock::now() - start);
  start = std::chrono::steady_clock::now();
  for (int done = 0; done < messages;) {
    auto got = call(atom::receive_v, receive_request{batch, 0s, 30s});
    if (!got)
      fail("receive", got.error());
    if (got->messages.empty())
      fail("receive", caf::make_error(errc::not_found, "the queue ran dry early"));
    std::vector<std::string> receipts;
    for (auto& m : got->messages)
      receipts.push_back(m.receipt);
    if (auto res = call(atom::remove_v, std::move(receipts)); !res)
      fail("delete", res.error());
    done += static_cast<int>(got->messages.size());
  }
  out.dequeue = per_second(messages, std::chrono::steady_clock::now() - start);
  caf::anon_send_exit(q, caf::exit_reason::user_shutdown);
  return out;
}

double median(std::vector<double> xs) {
  std::sort(xs.begin(), xs.end());
  return xs[xs.size() / 2];
}

} // namespace

int main(int argc, char** argv) {
  int messages = argc > 1 ? std::atoi(argv[1]) : 2000;
  if (messages < 10) {
    std::fprintf(stderr, "usage: queue_bench [MESSAGES (>= 10) [DIRECTORY]]\n");
    return 2;
  }
  bool own_directory = argc <= 2;
  std::string dir;
  if (own_directory) {
    auto pattern = (std::filesystem::temp_directory_path() / "queue-bench-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr) {
      std::perror("queue_bench: mkdtemp");
      return 1;
    }
    dir = pattern;
  } else {
    dir = argv[2];
  }
  log::configure("warn", "logfmt"); // not a line per queue opened
  caf::actor_system_config cfg;
  register_types(cfg);
  caf::actor_system sys{cfg};
  const variant variants[] = {{"in memory", std::nullopt},
                              {"durable, synchronous=FULL", store_sync::full},
                              {"durable, synchronous=NORMAL", store_sync::normal}};
  std::printf("%d messages of 1 KiB per run, median of %d runs, databases in %s\n\n",
              messages, runs, dir.c_str());
  std::printf("| queue | batch | enqueue msg/s | dequeue (receive+delete) msg/s |\n");
  std::printf("|---|---|---|---|\n");
  int file = 0;
  for (auto& v : variants) {
    for (int32_t batch : {1, 10}) {
      std::vector<double> enqueue;
      std::vector<double> dequeue;
      for (int run = 0; run < runs; ++run) {
        auto path = dir + "/bench-" + std::to_string(++file) + ".db";
        auto r = measure(spawn_queue(sys, v, path), messages, batch);
        enqueue.push_back(r.enqueue);
        dequeue.push_back(r.dequeue);
      }
      std::printf("| %s | %d | %.0f | %.0f |\n", v.name, batch, median(enqueue),
                  median(dequeue));
      std::fflush(stdout);
    }
  }
  sys.await_all_actors_done(); // each closes its database as it exits
  if (own_directory)
    std::filesystem::remove_all(dir);
  return 0;
}
