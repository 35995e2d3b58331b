// The ghscale executable: `simulate`, `check-config` and `run`.
//
// Exit codes: 0 success (or a clean drain after SIGTERM/SIGINT); 1 the
// supervision tree gave up (so systemd restarts us with its backoff) or a
// simulation broke an invariant; 2 bad usage or configuration; 3 a drain
// that ran past its budget.
#include "actors/clock.hpp"
#include "actors/embedded/embedded_backends.hpp"
#include "actors/ops/log.hpp"
#include "actors/ops/metrics.hpp"
#include "actors/node.hpp"
#include "actors/ops/ops_server.hpp"
#include "actors/clients/remote_backends.hpp"
#include "actors/embedded/embedded_defaults.hpp"
#include "actors/embedded/simulation.hpp"
#include "actors/embedded/trace.hpp"
#include "messages/actors.hpp"
#include "transport/config_file.hpp"
#include "transport/webhook.hpp"
#include "transport/wall_clock.hpp"

#include <caf/all.hpp>

#include <atomic>
#include <csignal>
#include <cstring>
#include <iostream>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <unistd.h>
#include <vector>

using namespace ghscale;

namespace {

const char* usage = R"(usage:
  ghscale simulate [--config FILE] [--trace FILE] [--json]
      Replay a workload trace through the real actor graph on the in-process
      backends, in virtual time, and print a report. With no arguments: the
      embedded default configuration (conf/simulate.toml) and trace
      (conf/traces/burst-500.jsonl). Exits 1 if a job was lost, a job got two
      runners, or a pool went over its cap.
  ghscale check-config [--values-only] FILE
      Validate FILE strictly and print the resolved configuration (secrets
      masked). Checks what `run` needs: every referenced file (App keys,
      webhook secrets, TLS pairs, CA bundle) is read and parsed, storage
      directories are writable. --values-only checks the values alone, for
      a config meant for another machine. Exits 0 valid, 2 invalid.
  ghscale run --config FILE [--trace FILE]
      Run the service against the backends FILE names: remote (SQS, EC2 +
      SSM, GitHub REST) or embedded (in-process). SIGTERM/SIGINT drain it
      gracefully: exit 0 when the drain finished within its budget, 3 when
      it ran past it. With the embedded backends, --trace feeds a workload
      in real time.
)";

struct options {
  std::string command;
  std::string config_file;
  std::string trace_file;
  bool json = false;
  bool values_only = false;
};

std::optional<options> parse_args(int argc, char** argv) {
  if (argc < 2)
    return std::nullopt;
  options opts;
  opts.command = argv[1];
  for (int i = 2; i < argc; ++i) {
    std::string arg = argv[i];
    auto value = [&]() -> std::optional<std::string> {
      if (i + 1 >= argc)
        return std::nullopt;
      return std::string{argv[++i]};
    };
    if (arg == "--config") {
      auto v = value();
      if (!v)
        return std::nullopt;
      opts.config_file = *v;
    } else if (arg == "--trace") {
      auto v = value();
      if (!v)
        return std::nullopt;
      opts.trace_file = *v;
    } else if (arg == "--json") {
      opts.json = true;
    } else if (arg == "--values-only" && opts.command == "check-config") {
      opts.values_only = true;
    } else if (opts.command == "check-config" && opts.config_file.empty()
               && arg.rfind("--", 0) != 0) {
      opts.config_file = arg;
    } else {
      std::cerr << "ghscale: unknown argument '" << arg << "'\n";
      return std::nullopt;
    }
  }
  return opts;
}

caf::expected<config> load(const options& opts) {
  if (opts.config_file.empty())
    return parse_config(scenario::default_config_text, "<embedded simulate.toml>");
  return load_config_file(opts.config_file);
}

/// A seed of this process's own, so that several processes on one queue
/// never back off and retry in lockstep.
uint64_t process_seed() {
  std::random_device device;
  auto wall = static_cast<uint64_t>(
    std::chrono::system_clock::now().time_since_epoch().count());
  return (static_cast<uint64_t>(device()) << 32) ^ device() ^ wall
         ^ (static_cast<uint64_t>(getpid()) << 16);
}

/// Exit codes: 0 success or a clean drain, 1 the supervision tree gave up
/// or a simulation broke an invariant, 2 bad usage, configuration or a
/// missing credential, 3 a drain that ran past its budget.
constexpr int exit_drain_incomplete = 3;

int fail(const caf::error& err) {
  std::cerr << "ghscale: " << describe(err) << "\n";
  return 2;
}

int simulate(const options& opts) {
  auto cfg = load(opts);
  if (!cfg)
    return fail(cfg.error());
  log::configure(cfg->logging.level, cfg->logging.format);
  auto trace = opts.trace_file.empty()
                 ? scenario::parse_trace(scenario::default_trace_text,
                                         "<embedded burst-500.jsonl>")
                 : scenario::load_trace_file(opts.trace_file);
  if (!trace)
    return fail(trace.error());
  auto name = opts.trace_file.empty() ? std::string{"burst-500 (embedded)"}
                                      : opts.trace_file;
  auto report = scenario::run_simulation(*cfg, *trace, name);
  if (!report)
    return fail(report.error());
  std::cout << scenario::render_report(*report, opts.json);
  return report->ok() ? 0 : 1;
}

int check_config(const options& opts) {
  if (opts.config_file.empty()) {
    std::cerr << usage;
    return 2;
  }
  auto cfg = load_config_file(opts.config_file, opts.values_only
                                                  ? config_checks::values
                                                  : config_checks::files);
  if (!cfg)
    return fail(cfg.error());
  std::cout << render_config(*cfg);
  return 0;
}

/// Feeds trace entries whose time has come into the embedded world.
class trace_feeder {
public:
  trace_feeder(std::vector<scenario::trace_entry> entries,
               const embedded_world& world, node_handles node)
    : entries_(std::move(entries)), world_(world), node_(std::move(node)),
      start_(std::chrono::steady_clock::now()) {}

  void feed() {
    auto elapsed = std::chrono::steady_clock::now() - start_;
    for (; next_ < entries_.size() && entries_[next_].at <= elapsed; ++next_)
      scenario::inject(entries_[next_], world_, node_);
  }

private:
  std::vector<scenario::trace_entry> entries_;
  size_t next_ = 0;
  const embedded_world& world_;
  node_handles node_;
  std::chrono::steady_clock::time_point start_;
};

void stop_world(const embedded_world& world) {
  caf::anon_send_exit(world.github, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(world.cloud, caf::exit_reason::user_shutdown);
  for (auto& [name, q] : world.wiring.queues)
    caf::anon_send_exit(q, caf::exit_reason::user_shutdown);
}

/// What the listener serves, once the node is up: the webhook (if a queue
/// takes it), metrics, and readiness: every queue answers, the supervision
/// tree is up, and AWS credentials resolve (when something on AWS is remote).
ops_server_setup listener_setup(caf::actor_system& sys, const config& cfg,
                                const backends& b, const node_handles& node,
                                const aws_credentials_actor& credentials,
                                std::vector<secret_string> secrets) {
  constexpr auto probe_timeout = std::chrono::seconds(2);
  ops_server_setup setup;
  setup.cfg = cfg.server;
  if (!cfg.server.webhook_queue.empty()) {
    setup.secrets = std::move(secrets);
    setup.webhook_queue = b.queues.at(cfg.server.webhook_queue);
  }
  for (auto& [name, queue] : b.queues)
    setup.readiness.push_back(queue_reachable(sys, name, queue, probe_timeout));
  setup.readiness.push_back(supervision_up(sys, node.node, probe_timeout));
  if (credentials)
    setup.readiness.push_back(credentials_usable(sys, credentials, probe_timeout));
  return setup;
}

int run(const options& opts) {
  // Signals are taken synchronously by this thread only: block them first,
  // before CAF starts its threads (which inherit the mask), so that even an
  // early SIGTERM ends in an orderly exit.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  if (opts.config_file.empty()) {
    std::cerr << "ghscale run: --config FILE is required\n" << usage;
    return 2;
  }
  auto cfg = load_config_file(opts.config_file, config_checks::files);
  if (!cfg)
    return fail(cfg.error());
  log::configure(cfg->logging.level, cfg->logging.format);
  std::vector<scenario::trace_entry> trace;
  if (!opts.trace_file.empty()) {
    auto parsed = scenario::load_trace_file(opts.trace_file);
    if (!parsed)
      return fail(parsed.error());
    for (auto& entry : *parsed)
      if (entry.what == scenario::trace_entry::kind::restart)
        return fail(caf::make_error(errc::invalid_config,
                                    opts.trace_file + ": \"restart\" entries are "
                                    "replayed by `ghscale simulate` only"));
    trace = std::move(*parsed);
  }
  // The listener binds before anything else is opened (a durable queue's
  // store is locked by whoever opens it): a second instance on the same
  // port stops here, holding nothing.
  std::vector<secret_string> secrets;
  if (!cfg->server.webhook_queue.empty()) {
    auto loaded = load_webhook_secrets(cfg->server.webhook_secret_files);
    if (!loaded)
      return fail(loaded.error());
    secrets = std::move(*loaded);
  }
  std::unique_ptr<http_server> listener;
  if (!cfg->server.listen.empty()) {
    auto bound = bind_ops_listener(cfg->server);
    if (!bound)
      return fail(bound.error());
    listener = std::move(*bound);
  }
  caf::actor_system_config sys_cfg;
  register_types(sys_cfg);
  caf::actor_system sys{sys_cfg};
  auto stats = std::make_shared<metrics>();
  auto world = spawn_embedded_backends(sys, *cfg, stats);
  if (!world)
    return fail(world.error());
  // The embedded backends keep [simulation].seed; everything else draws
  // its jitter from the process.
  auto seed = process_seed();
  auto remote = spawn_remote_backends(sys, *cfg, stats, seed);
  if (!remote) {
    stop_world(*world);
    return fail(remote.error());
  }
  merge_backends(world->wiring, remote->wiring);
  world->wiring.wall = clock_bridge{wall_now(), sys.clock().now().time_since_epoch()};
  auto stop_backends = [&] {
    stop_world(*world);
    if (remote->tree)
      caf::anon_send_exit(remote->tree, caf::exit_reason::user_shutdown);
  };
  auto node = spawn_node(sys, *cfg, world->wiring, stats, seed);
  if (!node) {
    stop_backends();
    return fail(node.error());
  }
  caf::expected<std::unique_ptr<ops_server>> server{std::unique_ptr<ops_server>{}};
  if (listener)
    server = start_ops_server(sys,
                              listener_setup(sys, *cfg, world->wiring, *node,
                                             remote->credentials, std::move(secrets)),
                              std::move(listener), stats);
  if (!server) {
    caf::anon_send_exit(node->node, caf::exit_reason::user_shutdown);
    stop_backends();
    return fail(server.error());
  }
  // Either tree giving up (restart intensity exceeded) ends the process
  // with 1, so that systemd restarts it with its own backoff.
  std::atomic<bool> node_down{false};
  caf::actor_cast<caf::abstract_actor*>(node->node)->attach_functor(
    [&node_down] { node_down = true; });
  if (remote->tree)
    caf::actor_cast<caf::abstract_actor*>(remote->tree)->attach_functor(
      [&node_down] { node_down = true; });
  trace_feeder feeder{std::move(trace), *world, *node};
  log::info("running", {{"config", opts.config_file}});
  int exit_code = 0;
  for (;;) {
    timespec tick{0, 100 * 1000 * 1000};
    int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGTERM || sig == SIGINT) {
      log::info("signal", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
      caf::scoped_actor self{sys};
      self->request(node->node, cfg->timeouts.drain + std::chrono::seconds(5),
                    atom::drain_v)
        .receive(
          [&](bool in_time) {
            if (in_time) {
              log::info("drained");
              return;
            }
            log::error("drain ran past its budget: what was left goes back "
                       "to its queue after its visibility timeout",
                       {{"budget_ms", to_ms(cfg->timeouts.drain)}});
            exit_code = exit_drain_incomplete;
          },
          [&](caf::error& err) {
            log::error("drain failed", {{"error", describe(err)}});
            exit_code = exit_drain_incomplete;
          });
      break;
    }
    if (node_down) {
      log::error("node stopped: supervision tree gave up");
      exit_code = 1;
      break;
    }
    feeder.feed();
  }
  // No delivery may reach a queue that is going away: the listener first.
  *server = nullptr;
  caf::anon_send_exit(node->node, caf::exit_reason::user_shutdown);
  stop_backends();
  return exit_code;
}

} // namespace

int main(int argc, char** argv) {
  auto opts = parse_args(argc, argv);
  if (!opts || opts->command == "--help" || opts->command == "-h"
      || opts->command == "help") {
    std::cerr << usage;
    return opts ? 0 : 2;
  }
  if (opts->command == "simulate")
    return simulate(*opts);
  if (opts->command == "check-config")
    return check_config(*opts);
  if (opts->command == "run")
    return run(*opts);
  std::cerr << "ghscale: unknown command '" << opts->command << "'\n" << usage;
  return 2;
}
