// HTTP requests per second through the http_client actor against a loopback
// cpp-httplib server (keep-alive), for several engine concurrency limits.
// A driver actor keeps twice the limit outstanding, so the engine always has
// work queued, and measures each request from send to answer.
//
// usage: http_bench [N]   (N requests per run, default 20000; median of 3)

#include "transport/httplib.hpp"

#include "actors/clients/http_client.hpp"
#include "messages/actors.hpp"
#include "transport/http_engine.hpp"

#include <caf/all.hpp>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace ghscale;
using bench_clock = std::chrono::steady_clock;

constexpr int runs = 3;
constexpr int limits[] = {1, 8, 64};

struct run_result {
  double requests_per_second = 0;
  double p50_us = 0;
  double p99_us = 0;
  int failed = 0;
};

/// One run's driver state, shared by the driver actor's callbacks.
struct load {
  http_engine_actor client;
  http_request request;
  int total = 0;
  int sent = 0;
  int failed = 0;
  std::vector<double> latencies_us;
  bench_clock::time_point began = bench_clock::now();
  std::promise<run_result> finished;
};

double percentile(const std::vector<double>& sorted, double p) {
  auto index = static_cast<size_t>(p * static_cast<double>(sorted.size()));
  return sorted[std::min(index, sorted.size() - 1)];
}

void finish(load& st) {
  auto seconds = std::chrono::duration<double>(bench_clock::now() - st.began).count();
  std::sort(st.latencies_us.begin(), st.latencies_us.end());
  st.finished.set_value({st.total / seconds, percentile(st.latencies_us, 0.50),
                         percentile(st.latencies_us, 0.99), st.failed});
}

void send_next(caf::event_based_actor* self, std::shared_ptr<load> st) {
  ++st->sent;
  auto sent_at = bench_clock::now();
  auto on_answer = [self, st, sent_at](bool ok) {
    st->latencies_us.push_back(
      std::chrono::duration<double, std::micro>(bench_clock::now() - sent_at).count());
    st->failed += ok ? 0 : 1;
    if (st->sent < st->total)
      send_next(self, st);
    else if (st->latencies_us.size() == static_cast<size_t>(st->total))
      finish(*st);
  };
  self->request(st->client, std::chrono::seconds(30), atom::http_v, st->request)
    .then([on_answer](http_response& r) { on_answer(r.status == 200); },
          [on_answer](caf::error&) { on_answer(false); });
}

run_result run_once(caf::actor_system& sys, const http_engine_actor& client,
                    const std::string& url, int total, int window) {
  auto st = std::make_shared<load>();
  st->client = client;
  st->request.url = url;
  st->total = total;
  st->latencies_us.reserve(static_cast<size_t>(total));
  auto result = st->finished.get_future();
  sys.spawn([st, window](caf::event_based_actor* self) {
    for (int i = 0; i < std::min(window, st->total); ++i)
      send_next(self, st);
  });
  return result.get();
}

/// The median run by throughput, with that run's latencies.
run_result median_of_runs(caf::actor_system& sys, const std::string& url,
                          int total, int limit) {
  http_engine_options opts;
  opts.max_in_flight = limit;
  opts.max_host_connections = limit;
  auto client = sys.spawn(http_client, opts);
  std::vector<run_result> results;
  for (int i = 0; i < runs; ++i)
    results.push_back(run_once(sys, client, url, total, 2 * limit));
  std::sort(results.begin(), results.end(), [](const run_result& a, const run_result& b) {
    return a.requests_per_second < b.requests_per_second;
  });
  return results[runs / 2];
}

} // namespace

int main(int argc, char** argv) {
  int total = argc > 1 ? std::atoi(argv[1]) : 20000;
  if (total <= 0) {
    std::fprintf(stderr, "usage: %s [N > 0]\n", argv[0]);
    return 2;
  }

  httplib::Server server;
  // One worker per keep-alive connection, and no Nagle delay between the
  // header and body writes.
  server.new_task_queue = [] { return new httplib::ThreadPool(160); };
  server.set_keep_alive_max_count(1000000);
  server.set_socket_options([](socket_t sock) {
    int on = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
    ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
  });
  server.Get("/bench", [](const httplib::Request&, httplib::Response& res) {
    res.set_content("{\"ok\":true}", "application/json");
  });
  auto port = server.bind_to_any_port("127.0.0.1");
  std::thread serving([&] { server.listen_after_bind(); });
  while (!server.is_running())
    std::this_thread::yield();
  auto url = "http://127.0.0.1:" + std::to_string(port) + "/bench";

  {
    caf::actor_system_config cfg;
    register_types(cfg);
    caf::actor_system sys{cfg};
    std::printf("http_bench: %d GET requests per run on loopback (keep-alive), "
                "2x the limit outstanding, median of %d runs\n",
                total, runs);
    std::printf("%-14s %12s %10s %10s %8s\n", "max_in_flight", "requests/s", "p50_us",
                "p99_us", "failed");
    for (int limit : limits) {
      auto r = median_of_runs(sys, url, total, limit);
      std::printf("%-14d %12.0f %10.1f %10.1f %8d\n", limit, r.requests_per_second,
                  r.p50_us, r.p99_us, r.failed);
    }
  }
  server.stop();
  serving.join();
  return 0;
}
