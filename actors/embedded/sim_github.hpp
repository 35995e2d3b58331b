#pragma once
// Simulated GitHub, seeded and deterministic: installations and tokens
// (expiry), JIT configs and registration tokens, runners, job status, the
// primary rate limit per installation and a secondary write limit (403 with
// retry-after), injected 5xx and 404 faults; every call is answered after
// `github_latency`. Jobs queued on it are taken by idle online runners with
// matching labels; it delivers the webhooks (queued, in_progress, completed)
// to the connected queue. When the cloud reports an instance gone, its
// runner goes offline but stays registered (a ghost until someone deletes
// it), and a job it was running fails.
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "actors/ops/metrics.hpp"

#include <caf/all.hpp>

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <unordered_map>

namespace ghscale {

struct sim_github_state {
  struct installation_token {
    int64_t installation_id = 0;
    caf::timespan expires_at{0};
  };

  /// Request budget of one installation.
  struct installation_budget {
    caf::timespan window_reset_at{0}; // the primary (hourly) window ends
    int64_t used = 0;                 // calls in the current window
    std::deque<caf::timespan> recent_writes; // mutations, trailing minute
  };

  /// What a registration token registers: a reusable runner.
  struct registration_grant {
    repository_ref target;
    std::string runner_name;
    std::vector<std::string> labels;
    caf::timespan expires_at{0};
  };

  struct runner {
    int64_t id = 0;
    std::string name;
    std::vector<std::string> labels;
    repository_ref target;
    bool ephemeral = true;
    bool online = false;
    std::optional<job_key> job; // the job it runs
    std::string instance_id;
    int64_t jobs_run = 0;
    bool instance_gone = false; // offline for good: a ghost registration
  };

  enum class job_state : uint8_t { queued, in_progress, completed };

  struct job {
    sim_job spec;
    std::string ran_on; // the instance whose runner took it
    job_state state = job_state::queued;
    uint64_t queued_seq = 0; // key into `queue` while queued
  };

  struct active_fault {
    sim_fault fault;
    caf::timespan until{0};
  };

  simulation_config cfg;
  metrics_ptr stats;
  std::mt19937_64 rng;
  queue_actor webhook_sink;
  sim_cloud_actor cloud;

  std::unordered_map<std::string, installation_token> tokens;
  std::map<int64_t, installation_budget> budgets; // by installation id
  std::unordered_map<std::string, int64_t> jit_configs; // unused, to runner id
  std::unordered_map<std::string, registration_grant> registration_tokens;
  std::map<int64_t, runner> runners; // by id
  /// "owner/repo/name" (lower case) of every runner: names are unique per
  /// registration target, as on GitHub.
  std::set<std::string> runner_names;
  std::set<int64_t> idle_runners;    // online and without a job
  std::unordered_map<std::string, int64_t> runner_on_instance; // online ones
  std::map<job_key, job> jobs;
  std::map<uint64_t, job_key> queue; // queued jobs in injection order
  std::map<std::string, active_fault> faults; // by kind

  uint64_t next_token = 1;  // ghs_sim_<n>
  uint64_t next_secret = 1; // jit_<n>, reg_<n>
  int64_t next_runner = 1;
  uint64_t next_queued = 1;
  /// "<op> <status>" and named counters; reported by `stats`.
  std::map<std::string, int64_t> counters;

  /// A response computed on arrival, delivered when its `github_latency`
  /// timer fires.
  struct delayed_answer {
    caf::typed_response_promise<github_response> promise;
    github_response response;
  };
  std::map<uint64_t, delayed_answer> delayed_answers; // by timer id
  uint64_t next_delayed_answer = 1;

  static inline const char* name = "sim_github";
};

sim_github_actor::behavior_type
sim_github(sim_github_actor::stateful_pointer<sim_github_state> self,
           simulation_config cfg, metrics_ptr stats);

} // namespace ghscale
