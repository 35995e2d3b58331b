#pragma once
// Simulated EC2 + SSM, seeded and deterministic: CreateFleet (instant) with
// a token bucket (throttling), capacity errors per instance type, partial
// fills, ClientToken idempotency; every EC2 / SSM call is answered after
// `ec2_latency`; instances boot after `boot_delay`, read their SSM parameter
// and bring their runner online in sim GitHub. Spot instances can be
// interrupted: EC2's two-minute warning goes to the connected queue, then the
// instance is reclaimed. Sim GitHub hears of every instance that goes away.
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "actors/ops/metrics.hpp"

#include <caf/all.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace ghscale {

struct sim_cloud_state {
  struct instance {
    instance_info info;
    std::string subnet;
    caf::timespan gives_up_at{0}; // stops looking for its parameter
    bool runner_started = false;  // its parameter was read, runner online
    bool warned = false;          // a spot interruption warning went out
  };

  struct active_fault {
    sim_fault fault;
    caf::timespan until{0};
  };

  simulation_config cfg;
  std::string parameter_prefix;
  sim_github_actor github;
  metrics_ptr stats;
  std::mt19937_64 rng;  // which spot instances an interruption hits
  queue_actor events;   // where EC2's events go (none: not connected)

  double fleet_tokens = 0;        // CreateFleet bucket
  caf::timespan refilled_at{0};   // when the bucket was last topped up
  std::unordered_map<std::string, fleet_result> fleets; // by ClientToken
  uint64_t next_instance = 1;
  std::map<std::string, instance> instances; // by id (ids sort by launch)
  int64_t live_instances = 0;                // not terminated
  std::map<std::string, int64_t> live_by_pool; // by `ghscale:pool` tag
  std::map<std::string, parameter> parameters; // by name
  /// Parameter names per `ghscale:job` tag: more than one is a duplicate.
  std::map<std::string, std::set<std::string>> launches_per_job;
  std::vector<active_fault> faults;
  /// API calls by name and ground-truth counters; reported by `stats`.
  std::map<std::string, int64_t> counters;
  /// Answers computed on arrival, each delivering its response promise
  /// when its `ec2_latency` timer fires; by timer id.
  std::map<uint64_t, std::function<void()>> delayed_answers;
  uint64_t next_delayed_answer = 1;

  static inline const char* name = "sim_cloud";
};

sim_cloud_actor::behavior_type
sim_cloud(sim_cloud_actor::stateful_pointer<sim_cloud_state> self,
          simulation_config cfg, std::string parameter_prefix,
          sim_github_actor github, metrics_ptr stats);

} // namespace ghscale
