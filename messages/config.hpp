#pragma once
// The resolved configuration: what `transport/config_file` parses from TOML
// (strictly) and what the node hands each actor at spawn time. Defaults here
// are the documented defaults of README's configuration reference.
#include "messages/types.hpp"

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace ghscale {

using namespace std::chrono_literals;

enum class backend_kind : uint8_t {
  embedded,  // in-process backend (embedded queue, simulated EC2 / GitHub)
  remote,    // the real service (SQS, EC2 + SSM, GitHub REST)
};
std::string to_string(backend_kind x);

struct queue_config {
  std::string name;
  backend_kind backend = backend_kind::embedded;
  std::string url;         // SQS queue URL (remote)
  std::string dead_letter; // name of the dead-letter queue ("" = none)
  caf::timespan visibility_timeout = 30s;
  caf::timespan wait_time = 20s; // long poll
  int32_t batch_size = 10;       // messages per receive, 1..10
  // Receives before the queue dead-letters a message. Jobs waiting for
  // capacity are received again every retry delay, so this also bounds how
  // long a job may wait over the cap (100 x retry.max by default).
  int32_t max_receive_count = 100;
  // Messages one poll loop holds at once (received, outcome not yet
  // applied; their visibility is extended meanwhile): it receives more while
  // it holds fewer, so one pool waiting for GitHub's budget does not stall
  // the loop for the others.
  int32_t max_in_flight = 100;
  int32_t min_loops = 1;         // poll loops
  int32_t max_loops = 1;
  // Depth (visible + in flight) at which the queue is "high": one more loop
  // per sample, up to max_loops. Once it is back at or under
  // `scale_down_depth`, one loop less per sample, down to min_loops.
  int64_t scale_up_depth = 100;
  int64_t scale_down_depth = 10;
  // Embedded queues only: the SQLite database (WAL mode) that keeps the
  // queue across crashes and restarts; "" keeps it in memory.
  std::string storage;
};

/// Poll-loop leases (the token registry).
struct poll_loops_config {
  caf::timespan heartbeat = 5s;     // a loop heartbeats this often
  caf::timespan stale_after = 40s;  // a lease this quiet gets a new loop
  caf::timespan sample_every = 30s; // queue depth sampling
};

struct github_app_config {
  std::string name;
  backend_kind backend = backend_kind::embedded;
  int64_t app_id = 0;
  std::string private_key_file;      // PEM path (its content is secret)
  std::string private_key_parameter; // or an SSM parameter name
  std::string base_url = "https://api.github.com"; // GHES: https://host/api/v3
  int32_t max_concurrency = 20;      // requests in flight per installation
  int32_t writes_per_minute = 80;    // content-creating requests (secondary)
  int32_t points_per_minute = 900;   // per-endpoint points (secondary)
  caf::timespan token_refresh_before = 5min;
  caf::timespan request_timeout = 10s;
  int32_t max_retries = 5;
};

/// While `cron` matches the current minute in `timezone`, a pool keeps
/// `min_idle` idle runners instead of its own `min_idle`; the first
/// matching window wins.
struct idle_window {
  std::string cron;              // five fields: minute hour day month weekday
  std::string timezone = "UTC";  // IANA name
  int32_t min_idle = 0;
};

enum class label_match : uint8_t { exact, subset };
std::string to_string(label_match x);
enum class runner_mode : uint8_t { ephemeral, reusable };
std::string to_string(runner_mode x);

struct pool_config {
  std::string name;
  std::string queue;      // the queue whose jobs it takes
  std::string github_app; // the App that registers its runners
  std::vector<std::string> labels;
  label_match match = label_match::exact;
  int32_t priority = 0;   // higher wins when several pools match
  bool org_level = true;  // register runners at the org, else at the repo
  std::string runner_group = "Default";
  runner_mode mode = runner_mode::ephemeral;
  int32_t max_runners = 10;
  int32_t min_idle = 0;
  std::vector<std::string> instance_types;
  std::vector<std::string> subnets;
  std::string launch_template;
  capacity_type capacity = capacity_type::spot;
  std::vector<std::string> on_demand_failover; // CreateFleet error codes
  bool job_queued_check = true; // ask GitHub whether the job still waits
  // Scale-down (the reaper).
  caf::timespan reap_interval = 1min;         // one pass this often
  caf::timespan minimum_running_time = 5min;  // idle runners live this long
  caf::timespan boot_time = 5min;             // a runner registers within
  std::vector<idle_window> idle_schedule;     // min_idle by time of day
  // A spot interruption's replacement runner is launched on-demand.
  bool on_demand_after_interruption = true;
};

struct aws_config {
  std::string region = "us-east-1";
  backend_kind backend = backend_kind::embedded;
  std::string sqs_endpoint; // "" = the region's default
  std::string ec2_endpoint;
  std::string ssm_endpoint;
  std::string parameter_prefix = "/ghscale/runners"; // where JIT configs go
  std::string profile;    // shared-files profile ("" = AWS_PROFILE or default)
  std::string kms_key_id; // for the SecureString JIT configs ("" = AWS managed)
  // Parameter Store transactions a second: 40 is AWS's default; accounts
  // with "higher throughput" on may set their quota (up to 10000).
  double ssm_throughput = 40;
};

/// The HTTP engine behind every remote backend.
struct http_config {
  int32_t max_in_flight = 64;        // transfers at once; more wait in line
  int32_t max_host_connections = 32; // kept-alive connections per host
  std::string ca_bundle;             // PEM file; "" = the system's CAs
  caf::timespan connect_timeout = 5s;
};

struct scaler_config {
  caf::timespan window = 250ms; // gather events this long before deciding
  int32_t max_batch = 100;      // decide early once this many jobs wait
};

struct retry_config {
  caf::timespan base = 5s;  // retry delay for the first receive
  caf::timespan max = 1min;  // the backoff never grows past this: a job
                             // over the cap is looked at again this often
  double jitter = 0.2;      // +- fraction applied to each delay
};

/// Re-checks of jobs acked without a runner of their own.
struct job_retry_config {
  bool enabled = true;
  caf::timespan delay = 30s;      // before the first re-check ...
  caf::timespan max_delay = 10min; // ... doubling up to this
  int32_t max_attempts = 5;
  double jitter = 0.2;
};

struct supervision_config {
  int32_t max_restarts = 5;             // R restarts ...
  caf::timespan within = 60s;           // ... in T, then escalate
  caf::timespan initial_backoff = 100ms;
  caf::timespan max_backoff = 10s;
  double jitter = 0.2;
};

struct timeouts_config {
  caf::timespan launch = 120s;   // scaler -> launcher
  caf::timespan ledger = 5s;     // scaler -> ledger
  caf::timespan scale = 300s;    // poller -> scaler (window + launch)
  caf::timespan aws_call = 30s;  // launcher -> EC2 / SSM
  caf::timespan github_call = 30s; // installation client -> GitHub
  caf::timespan drain = 30s;     // graceful stop budget
};

/// Shape of the in-process backends (also used by `ghscale simulate`).
struct simulation_config {
  uint64_t seed = 42;
  caf::timespan boot_delay = 40s;        // instance launch to runner online
  caf::timespan ec2_latency = 0ms;       // per EC2 / SSM call
  caf::timespan github_latency = 0ms;    // per GitHub call
  int32_t ec2_fleet_burst = 50;          // CreateFleet bucket size ...
  double ec2_fleet_refill = 5.0;         // ... refilled per second
  int64_t github_hourly_limit = 15000;   // primary limit per installation
  int32_t github_writes_per_minute = 0;  // secondary limit enforced (0 = off)
  caf::timespan token_ttl = 1h;          // installation token lifetime
};

/// The HTTP(S) listener: GitHub webhooks, /metrics, /healthz, /readyz.
struct server_config {
  std::string listen;                     // "host:port"; "" = no listener
  std::string tls_cert_file;              // HTTPS when both are set
  std::string tls_key_file;
  std::string webhook_path = "/webhook";
  std::string webhook_queue;              // where accepted events go
  // Files holding the webhook secrets (one each; several while rotating).
  // Their content is secret.
  std::vector<std::string> webhook_secret_files;
  // "owner/repo" or "owner/*"; empty = every repository.
  std::vector<std::string> allowed_repositories;
  int64_t max_body_bytes = 1024 * 1024;
  int32_t threads = 2;                    // I/O threads serving connections
  // What one client may cost: every bound answers with its status (431,
  // 414, 408) or closes the connection.
  int32_t max_connections = 512;
  int32_t max_connections_per_client = 64; // per client address
  int32_t max_headers = 100;
  int32_t max_header_bytes = 16 * 1024;    // all header fields together
  int32_t max_request_line = 8 * 1024;     // method, URL and version
  caf::timespan head_timeout = 10s;        // the whole request head
  caf::timespan body_timeout = 10s;        // the whole body, once the head is in
  caf::timespan keep_alive_timeout = 15s;  // an idle connection is closed
};

struct logging_config {
  std::string level = "info"; // trace, debug, info, warn, error, off
  std::string format = "logfmt"; // logfmt or json
};

struct config {
  std::vector<queue_config> queues;
  std::vector<github_app_config> github_apps;
  std::vector<pool_config> pools;
  aws_config aws;
  http_config http;
  scaler_config scaler;
  retry_config retry;
  poll_loops_config poll_loops;
  job_retry_config job_retry;
  supervision_config supervision;
  timeouts_config timeouts;
  simulation_config simulation;
  server_config server;
  logging_config logging;

  const queue_config* find_queue(const std::string& name) const;
  const pool_config* find_pool(const std::string& name) const;
  const github_app_config* find_app(const std::string& name) const;
};

} // namespace ghscale
