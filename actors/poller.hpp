#pragma once
// One long-poll loop on one queue. It receives a batch, parses and routes
// each message, asks each job's pool scaler for its outcome, and applies the
// outcomes as they come (delete, change visibility, dead-letter), batched
// into as few queue calls as it can. Nothing is deleted without an outcome
// that says so.
//
// The loop holds what it received until the outcome is applied, and keeps
// those messages hidden meanwhile: every so often it extends the visibility
// of all of them in one ChangeMessageVisibilityBatch, well before they would
// reappear, up to SQS's 12-hour bound. It keeps receiving while it holds
// fewer than the queue's `max_in_flight`, so a pool waiting for GitHub's
// budget does not stall the others.
//
// The loop holds a lease from the token registry and heartbeats it on its
// own timer; a `stop` verdict (revoked token, or a replacement took its loop
// id) ends it like a drain: it receives no more and quits once every message
// it holds is settled.
#include "messages/actors.hpp"
#include "messages/config.hpp"
#include "actors/ops/metrics.hpp"
#include <map>
#include <optional>
#include <random>
#include <vector>

#include <caf/all.hpp>

namespace ghscale {

/// A received message whose outcome is not applied yet.
struct held_message {
  queue_message msg;
  std::string job;               // the job it carries, for logs ("" if none)
  caf::timespan received_at{0};  // SQS's 12-hour bound counts from here
  caf::timespan hidden_until{0}; // when the queue would show it again
  /// The queue refused to extend this receipt: the message was received
  /// again (by another loop or process), whose receipt is the newest; its
  /// outcome still comes, and goes to every receipt of the job.
  bool superseded = false;
};

/// An outcome waiting for the next batch of queue calls.
struct settled_message {
  held_message held;
  message_outcome outcome;
};

struct poller_state {
  bool receiving = false; // a receive call is in flight
  bool draining = false;  // drain asked or told to stop: receive no more
  /// Drain requests, answered once the loop has stopped.
  std::vector<caf::typed_response_promise<bool>> drain_waiters;
  /// Consecutive failed receives, for the backoff before the next one.
  int32_t receive_failures = 0;
  /// What the loop holds, by receipt.
  std::map<std::string, held_message> held;
  /// Outcomes to apply at the next flush, and messages whose outcome calls
  /// are in flight.
  std::vector<settled_message> settled;
  size_t applying = 0;
  bool flush_armed = false;
  /// The visibility timer armed, if any, and whether an extension call is
  /// in flight (one at a time).
  std::optional<caf::timespan> extend_at;
  bool extending = false;
  int32_t extend_failures = 0;
  std::mt19937_64 rng;
  static inline const char* name = "poller";
};

/// Where the poller sends what it receives, by pool name.
struct poller_routes {
  std::vector<pool_config> pools;
  std::map<std::string, scaler_actor> scalers;
  std::map<std::string, lifecycle_sink_actor> ledgers;
};

/// Everything a loop of one queue needs, shared by all its loops.
struct poller_setup {
  queue_config queue;
  queue_actor source;
  queue_actor dead_letter; // may be null: poison is parked instead
  poller_routes routes;
  retry_config retry;
  timeouts_config timeouts;
  poll_loops_config loops;
};

poller_actor::behavior_type
poller(poller_actor::stateful_pointer<poller_state> self, poller_setup setup,
       lease held, lease_keeper_actor registry, metrics_ptr stats,
       uint64_t seed);

} // namespace ghscale
