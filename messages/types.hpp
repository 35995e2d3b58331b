#pragma once
// Every value that travels between ghscale actors. Plain structs with
// `inspect` overloads, so they print with caf::deep_to_string, serialize to
// remote nodes, and can be built by tests without any actor around.
//
// Times: `caf::timespan` is used for durations and, where a field is called
// `*_at`, for a point on the actor clock expressed as the time since the
// clock's epoch. Actors read the clock with `self->clock().now()`, never the
// wall clock, so the whole graph runs unchanged in virtual time.
#include "messages/secret.hpp"

#include <caf/all.hpp>

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace ghscale {

// -- error codes ---------------------------------------------------------------

/// Expected failures, returned as values (`caf::error` with category
/// "ghscale"). The context string of an error says what and where, never a
/// secret.
enum class errc : uint8_t {
  none = 0,
  malformed_event,      // a queue message body that is not a workflow_job
  invalid_config,       // configuration rejected
  not_ready,            // actor still initialising (e.g. ledger reconciling)
  unavailable,          // a supervised child is restarting
  throttled,            // the backend asked us to slow down
  backend_failure,      // 5xx or other transient backend error
  not_found,            // 404 from a backend
  rejected,             // 4xx that retrying will not fix
  over_capacity,        // the pool's cap is reached
  shutting_down,        // the node is draining
  unknown_pool,         // routing names a pool that does not exist
  timeout,              // a deadline passed
  runner_busy,          // GitHub refused to delete a runner running a job
};

std::string to_string(errc x);

/// "what: context" for any error, without needing an actor_system (which
/// `actor_system::render` does): used for logs, outcomes and dead letters.
std::string describe(const caf::error& err);
/// Only the "what and where" of an error (its context), for wrapping it in
/// another error without repeating the code; `describe` if it has none.
std::string context_of(const caf::error& err);

// -- GitHub side ---------------------------------------------------------------

enum class owner_type : uint8_t { organization, user };
std::string to_string(owner_type x);

/// Where a runner is registered: an organization (`repo` empty) or a repo.
struct repository_ref {
  std::string owner;
  std::string repo; // empty for organization-level targets
  owner_type type = owner_type::organization;
  bool org_level() const noexcept { return repo.empty(); }
  std::string full_name() const { return repo.empty() ? owner : owner + "/" + repo; }
  friend bool operator==(const repository_ref& a, const repository_ref& b) {
    return a.owner == b.owner && a.repo == b.repo && a.type == b.type;
  }
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, repository_ref& x) {
  return f(caf::meta::type_name("ghscale::repository_ref"), x.owner, x.repo,
           x.type);
}

/// Identifies one attempt of one job: the unit of "at most one runner".
struct job_key {
  int64_t job_id = 0;
  int32_t run_attempt = 1;
  friend bool operator==(const job_key& a, const job_key& b) {
    return a.job_id == b.job_id && a.run_attempt == b.run_attempt;
  }
  friend bool operator!=(const job_key& a, const job_key& b) { return !(a == b); }
  friend bool operator<(const job_key& a, const job_key& b) {
    return a.job_id != b.job_id ? a.job_id < b.job_id
                                : a.run_attempt < b.run_attempt;
  }
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_key& x) {
  return f(caf::meta::type_name("ghscale::job_key"), x.job_id, x.run_attempt);
}
std::string to_string(const job_key& x);

enum class job_action : uint8_t { queued, in_progress, completed, waiting };
std::string to_string(job_action x);

/// A `workflow_job` event, whichever body format it arrived in.
struct job_event {
  job_action action = job_action::queued;
  job_key key;
  int64_t run_id = 0;
  repository_ref repository; // the repository the job belongs to
  int64_t installation_id = 0;
  std::vector<std::string> labels;
  std::string runner_name; // in_progress / completed: the runner that took it
  int32_t retry_counter = 0; // from the Lambda format; 0 for raw webhooks
  /// GitHub's `created_at` and `started_at` of the job (Unix time; 0 when
  /// the body has none): time-to-start is their difference.
  caf::timespan created_at{0};
  caf::timespan started_at{0};
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_event& x) {
  return f(caf::meta::type_name("ghscale::job_event"), x.action, x.key,
           x.run_id, x.repository, x.installation_id, x.labels, x.runner_name,
           x.retry_counter, x.created_at, x.started_at);
}

// -- queues ------------------------------------------------------------------

/// A message's attributes, name to value: SQS MessageAttributes of
/// DataType String, a column of the embedded store.
using message_attributes = std::map<std::string, std::string>;

/// One message as received from a queue.
struct queue_message {
  std::string message_id;
  std::string receipt;     // receipt handle: names this delivery
  std::string body;
  int32_t receive_count = 1; // ApproximateReceiveCount, 1 on first delivery
  caf::timespan sent_at{0};  // when it was first put on the queue
  message_attributes attributes{}; // none unless given
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, queue_message& x) {
  return f(caf::meta::type_name("ghscale::queue_message"), x.message_id,
           x.receipt, x.body, x.receive_count, x.sent_at, x.attributes);
}

/// ReceiveMessage: up to `max_messages`, waiting up to `wait` for the first.
struct receive_request {
  int32_t max_messages = 10;
  caf::timespan wait = std::chrono::seconds(20);
  caf::timespan visibility = std::chrono::seconds(30);
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, receive_request& x) {
  return f(caf::meta::type_name("ghscale::receive_request"), x.max_messages,
           x.wait, x.visibility);
}

struct received_batch {
  std::vector<queue_message> messages;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, received_batch& x) {
  return f(caf::meta::type_name("ghscale::received_batch"), x.messages);
}

/// ChangeMessageVisibility for one delivery: it reappears after `delay`.
struct visibility_change {
  std::string receipt;
  caf::timespan delay{0};
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, visibility_change& x) {
  return f(caf::meta::type_name("ghscale::visibility_change"), x.receipt,
           x.delay);
}

/// SendMessage entry.
struct outgoing_message {
  std::string body;
  caf::timespan delay{0};
  message_attributes attributes{}; // none unless given
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, outgoing_message& x) {
  return f(caf::meta::type_name("ghscale::outgoing_message"), x.body, x.delay,
           x.attributes);
}

/// What a dead-lettered message carries, for whoever reads the dead-letter
/// queue: why it was given up, and where it came from.
namespace dead_letter_attribute {
constexpr const char* reason = "ghscale.reason";
constexpr const char* source_queue = "ghscale.source-queue";
constexpr const char* source_message_id = "ghscale.source-message-id";
constexpr const char* receive_count = "ghscale.receive-count";
} // namespace dead_letter_attribute

/// `msg` as a letter to the dead-letter queue of `source_queue`, saying
/// `reason` (cut to 1 KiB, at a character boundary).
outgoing_message dead_letter_for(const queue_message& msg,
                                 const std::string& source_queue,
                                 const std::string& reason);

struct batch_entry_error {
  std::string id; // the receipt (delete, visibility) or index (send)
  std::string code;
  std::string message;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, batch_entry_error& x) {
  return f(caf::meta::type_name("ghscale::batch_entry_error"), x.id, x.code,
           x.message);
}

/// Result of a batch call: partial failure is normal and reported per entry.
struct batch_result {
  std::vector<std::string> succeeded;
  std::vector<batch_entry_error> failed;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, batch_result& x) {
  return f(caf::meta::type_name("ghscale::batch_result"), x.succeeded,
           x.failed);
}

/// GetQueueAttributes: ApproximateNumberOfMessages{,NotVisible,Delayed}.
struct queue_depth {
  int64_t visible = 0;
  int64_t in_flight = 0;
  int64_t delayed = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, queue_depth& x) {
  return f(caf::meta::type_name("ghscale::queue_depth"), x.visible,
           x.in_flight, x.delayed);
}

// -- scaler --------------------------------------------------------------------

/// A queued job on its way to a scaler, with the delivery it came in.
struct pending_job {
  std::string receipt;
  job_event event;
  int32_t receive_count = 1;
  caf::timespan sent_at{0}; // when its message was first queued (actor clock)
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pending_job& x) {
  return f(caf::meta::type_name("ghscale::pending_job"), x.receipt, x.event,
           x.receive_count, x.sent_at);
}

struct scale_request {
  std::vector<pending_job> jobs;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, scale_request& x) {
  return f(caf::meta::type_name("ghscale::scale_request"), x.jobs);
}

enum class outcome_kind : uint8_t {
  done,   // delete the message: its job has a runner or needs none
  retry,  // make it visible again after `delay`
  poison, // it can never be processed: dead-letter it with `reason`
};
std::string to_string(outcome_kind x);

/// What to do with one delivery. `reason` is for logs and dead letters.
struct message_outcome {
  std::string receipt;
  outcome_kind kind = outcome_kind::retry;
  caf::timespan delay{0};
  std::string reason;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, message_outcome& x) {
  return f(caf::meta::type_name("ghscale::message_outcome"), x.receipt, x.kind,
           x.delay, x.reason);
}

struct batch_outcome {
  std::vector<message_outcome> outcomes;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, batch_outcome& x) {
  return f(caf::meta::type_name("ghscale::batch_outcome"), x.outcomes);
}

// -- runner ledger -------------------------------------------------------------

enum class runner_state : uint8_t {
  requested,  // capacity reserved, launch not answered yet
  pending,    // instance launched and handed its config, not yet online
  ready,      // registered and idle
  running,    // running a job
  completed,  // its (ephemeral) job completed
  failed,     // launch or registration failed
  orphaned,   // instance without registration past the boot time
  terminated, // instance gone
};
std::string to_string(runner_state x);
/// True for states that count against a pool's cap.
bool counts_against_cap(runner_state x) noexcept;

/// One runner to launch. `job.job_id == 0` marks an idle top-up runner.
struct runner_spec {
  job_key job;
  repository_ref target; // where the runner registers
  int64_t installation_id = 0;
  /// The installation client's admission its registration was planned
  /// under (0: none).
  uint64_t admission = 0;
  /// The job's repository: what the job would be put back on its queue
  /// with, should it lose its runner (empty for top-ups).
  repository_ref repository;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, runner_spec& x) {
  return f(caf::meta::type_name("ghscale::runner_spec"), x.job, x.target,
           x.installation_id, x.admission, x.repository);
}

/// Asks the ledger for capacity for `jobs` (already deduplicated in the
/// window; each with where its runner would register) plus, when
/// `idle_topup` is set, enough idle runners to reach the pool's minimum.
struct reservation_request {
  std::vector<runner_spec> jobs;
  bool idle_topup = true;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, reservation_request& x) {
  return f(caf::meta::type_name("ghscale::reservation_request"), x.jobs,
           x.idle_topup);
}

/// The ledger's atomic answer: jobs that already have a runner configured,
/// jobs whose runner is still being set up (`in_flight`: neither acked nor
/// launched for again until that settles), jobs granted a slot (in request
/// order), and extra idle slots. Jobs in no list are over the cap. The slots
/// stay `requested` until a launch_report.
///
/// Ephemeral runners are not bound to jobs: a runner launched for job X may
/// be taken by an older job Y that had none, leaving X (whose message is
/// gone) without one. `replacements` are runners to launch for such jobs.
/// While some cannot be granted, `held` jobs (served, but their messages
/// not yet deleted) are kept on the queue to carry that demand.
struct reservation {
  uint64_t id = 0;
  std::vector<job_key> already_served;
  std::vector<job_key> in_flight;
  std::vector<job_key> granted;
  int32_t idle_topup = 0;
  std::vector<runner_spec> replacements;
  std::vector<job_key> held;
  int32_t active = 0; // counted against the cap, before this reservation
  int32_t cap = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, reservation& x) {
  return f(caf::meta::type_name("ghscale::reservation"), x.id,
           x.already_served, x.in_flight, x.granted, x.idle_topup, x.replacements, x.held,
           x.active, x.cap);
}

enum class capacity_type : uint8_t { spot, on_demand };
std::string to_string(capacity_type x);

/// One launch per capacity decision. `client_token` makes it idempotent.
struct launch_request {
  std::string pool;
  std::string client_token;
  std::vector<runner_spec> runners;
  /// On-demand whatever the pool's capacity type (replacements for spot
  /// interruptions).
  bool on_demand = false;
  /// The ledger reservation the runners fill: each is recorded there as
  /// soon as it is configured (0: not reported early).
  uint64_t reservation = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, launch_request& x) {
  return f(caf::meta::type_name("ghscale::launch_request"), x.pool,
           x.client_token, x.runners, x.on_demand, x.reservation);
}

/// A runner whose instance came up and received its config.
struct launched_runner {
  int32_t spec_index = 0; // into launch_request::runners
  job_key job;
  std::string instance_id;
  std::string instance_type;
  capacity_type capacity = capacity_type::on_demand;
  std::string runner_name;
  int64_t runner_id = 0; // GitHub's id, once registered
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, launched_runner& x) {
  return f(caf::meta::type_name("ghscale::launched_runner"), x.spec_index,
           x.job, x.instance_id, x.instance_type, x.capacity, x.runner_name,
           x.runner_id);
}

/// A runner that did not come up, with EC2's or GitHub's error code.
struct launch_failure {
  int32_t spec_index = 0;
  job_key job;
  std::string code;    // e.g. InsufficientInstanceCapacity, github_5xx
  std::string message; // never a secret
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, launch_failure& x) {
  return f(caf::meta::type_name("ghscale::launch_failure"), x.spec_index, x.job,
           x.code, x.message);
}

/// Every spec index of the request appears exactly once, in one list.
struct launch_result {
  std::vector<launched_runner> launched;
  std::vector<launch_failure> failed;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, launch_result& x) {
  return f(caf::meta::type_name("ghscale::launch_result"), x.launched,
           x.failed);
}

/// Tells the ledger what became of a reservation; unfilled slots are freed.
struct launch_report {
  uint64_t reservation_id = 0;
  std::vector<launched_runner> launched;
  int32_t failed = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, launch_report& x) {
  return f(caf::meta::type_name("ghscale::launch_report"), x.reservation_id,
           x.launched, x.failed);
}

/// Exact counts per lifecycle state, plus idle runners (ready, no job).
struct ledger_counts {
  int32_t requested = 0;
  int32_t pending = 0;
  int32_t ready = 0;
  int32_t running = 0;
  int32_t completed = 0;
  int32_t failed = 0;
  int32_t orphaned = 0;
  int32_t terminated = 0;
  /// Jobs whose runner another job took, waiting for a replacement.
  int32_t waiting = 0;
  int32_t active() const noexcept {
    return requested + pending + ready + running + orphaned;
  }
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, ledger_counts& x) {
  return f(caf::meta::type_name("ghscale::ledger_counts"), x.requested,
           x.pending, x.ready, x.running, x.completed, x.failed, x.orphaned,
           x.terminated, x.waiting);
}

// -- EC2 and SSM -------------------------------------------------------------

struct tag {
  std::string key;
  std::string value;
  friend bool operator==(const tag& a, const tag& b) {
    return a.key == b.key && a.value == b.value;
  }
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, tag& x) {
  return f(caf::meta::type_name("ghscale::tag"), x.key, x.value);
}

/// CreateFleet, type instant.
struct fleet_request {
  std::string client_token;
  std::string launch_template;
  std::vector<std::string> instance_types;
  std::vector<std::string> subnets;
  capacity_type capacity = capacity_type::on_demand;
  int32_t count = 0;
  std::vector<tag> tags;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, fleet_request& x) {
  return f(caf::meta::type_name("ghscale::fleet_request"), x.client_token,
           x.launch_template, x.instance_types, x.subnets, x.capacity, x.count,
           x.tags);
}

struct fleet_instance {
  std::string instance_id;
  std::string instance_type;
  std::string subnet;
  capacity_type capacity = capacity_type::on_demand;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, fleet_instance& x) {
  return f(caf::meta::type_name("ghscale::fleet_instance"), x.instance_id,
           x.instance_type, x.subnet, x.capacity);
}

/// One entry of CreateFleet's Errors[].
struct fleet_error {
  std::string code;
  std::string message;
  std::string instance_type;
  std::string subnet;
  capacity_type capacity = capacity_type::on_demand;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, fleet_error& x) {
  return f(caf::meta::type_name("ghscale::fleet_error"), x.code, x.message,
           x.instance_type, x.subnet, x.capacity);
}

/// An instant fleet fills partially and says why in `errors`.
struct fleet_result {
  std::vector<fleet_instance> instances;
  std::vector<fleet_error> errors;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, fleet_result& x) {
  return f(caf::meta::type_name("ghscale::fleet_result"), x.instances,
           x.errors);
}

enum class instance_state : uint8_t {
  pending, running, shutting_down, terminated, stopping, stopped
};
std::string to_string(instance_state x);

struct instance_info {
  std::string instance_id;
  std::string instance_type;
  instance_state state = instance_state::pending;
  capacity_type capacity = capacity_type::on_demand;
  caf::timespan launched_at{0};
  std::vector<tag> tags;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, instance_info& x) {
  return f(caf::meta::type_name("ghscale::instance_info"), x.instance_id,
           x.instance_type, x.state, x.capacity, x.launched_at, x.tags);
}

/// The instance tags ghscale writes and reads.
namespace tag_key {
constexpr const char* pool = "ghscale:pool";
/// The job an instance (or its SSM parameter) was launched for.
constexpr const char* job = "ghscale:job";
constexpr const char* client_token = "ghscale:token";
/// Where the instance's runner registers ("org" or "org/repo"), the owner's
/// type ("Organization" or "User") and the App installation: the reaper
/// lists registrations there, even after a restart.
constexpr const char* owner = "ghscale:owner";
constexpr const char* owner_type = "ghscale:owner-type";
constexpr const char* installation = "ghscale:installation";
/// Set by the reaper on an instance without a registration past its boot
/// time; terminated at the next pass unless it registered meanwhile.
constexpr const char* orphan = "ghscale:orphan";
/// Set by operators: the reaper never touches the instance.
constexpr const char* bypass_removal = "ghscale:bypass-removal";
} // namespace tag_key

/// The value of tag `key`, or nullptr.
const std::string* find_tag(const std::vector<tag>& tags, const std::string& key);

/// DescribeInstances with tag filters; `include_terminated` off by default.
struct instance_filter {
  std::vector<tag> tags;
  bool include_terminated = false;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, instance_filter& x) {
  return f(caf::meta::type_name("ghscale::instance_filter"), x.tags,
           x.include_terminated);
}

struct instance_list {
  std::vector<instance_info> instances;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, instance_list& x) {
  return f(caf::meta::type_name("ghscale::instance_list"), x.instances);
}

struct instance_ids {
  std::vector<std::string> ids;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, instance_ids& x) {
  return f(caf::meta::type_name("ghscale::instance_ids"), x.ids);
}

/// CreateTags: `tags` added to (or replaced on) every instance of `ids`.
struct instance_tags {
  std::vector<std::string> ids;
  std::vector<tag> tags;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, instance_tags& x) {
  return f(caf::meta::type_name("ghscale::instance_tags"), x.ids, x.tags);
}

/// SSM PutParameter (SecureString): how an instance receives its JIT config.
struct parameter {
  std::string name;
  secret_string value;
  std::vector<tag> tags;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, parameter& x) {
  return f(caf::meta::type_name("ghscale::parameter"), x.name, x.value,
           x.tags);
}

// -- GitHub REST ---------------------------------------------------------------

/// Operations the installation client performs against GitHub.
enum class github_op : uint8_t {
  create_installation_token, // POST /app/installations/{id}/access_tokens
  generate_jit_config,       // POST .../actions/runners/generate-jitconfig
  create_registration_token, // POST .../actions/runners/registration-token
  get_job,                   // GET /repos/{o}/{r}/actions/jobs/{id}
  list_runners,              // GET .../actions/runners
  delete_runner,             // DELETE .../actions/runners/{id}
  get_runner_group,          // GET /orgs/{o}/actions/runner-groups
  get_installation,          // GET /orgs/{o}/installation, /repos/{o}/{r}/installation
};
std::string to_string(github_op x);
/// Mutations cost more against GitHub's secondary limits.
bool is_mutation(github_op x) noexcept;

/// Queueing priority inside an installation client: lower goes first.
enum class request_priority : uint8_t { register_runner = 0, check_job = 1, cleanup = 2 };
std::string to_string(request_priority x);

struct github_request {
  github_op op = github_op::get_job;
  int64_t installation_id = 0;
  secret_string credential; // app JWT for token mints, else installation token
  repository_ref target;
  std::string runner_name;
  std::vector<std::string> labels;
  std::string runner_group;
  int64_t job_id = 0;
  int64_t runner_id = 0;
  int32_t page = 1;
  int64_t runner_group_id = 0; // generate_jit_config; 0 = "Default" (id 1)
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, github_request& x) {
  return f(caf::meta::type_name("ghscale::github_request"), x.op,
           x.installation_id, x.credential, x.target, x.runner_name, x.labels,
           x.runner_group, x.job_id, x.runner_id, x.page, x.runner_group_id);
}

/// The x-ratelimit-* headers of one response.
struct rate_limit {
  int64_t limit = 0;
  int64_t remaining = 0;
  caf::timespan reset_at{0}; // on the actor clock
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, rate_limit& x) {
  return f(caf::meta::type_name("ghscale::rate_limit"), x.limit, x.remaining,
           x.reset_at);
}

struct runner_info {
  int64_t id = 0;
  std::string name;
  std::string status; // online / offline
  bool busy = false;
  std::vector<std::string> labels;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, runner_info& x) {
  return f(caf::meta::type_name("ghscale::runner_info"), x.id, x.name,
           x.status, x.busy, x.labels);
}

/// A GitHub answer: HTTP status, rate-limit headers, and the fields the
/// operation produces. `message` is GitHub's error text, never a secret.
struct github_response {
  int32_t status = 0;
  rate_limit rate;
  caf::timespan retry_after{0}; // 0: header absent
  secret_string secret;         // installation token, JIT config, reg. token
  caf::timespan expires_at{0};  // of `secret`, where it expires
  int64_t runner_id = 0;
  std::string job_status; // queued, in_progress, completed, waiting
  std::vector<runner_info> runners;
  bool has_next_page = false;
  std::string message;
  int64_t resource_id = 0; // installation id, or the runner group's id
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, github_response& x) {
  return f(caf::meta::type_name("ghscale::github_response"), x.status, x.rate,
           x.retry_after, x.secret, x.expires_at, x.runner_id, x.job_status,
           x.runners, x.has_next_page, x.message, x.resource_id);
}

/// Creates a runner registration: a JIT config (ephemeral) or a registration
/// token (reusable).
struct registration_request {
  repository_ref target;
  std::string runner_name;
  std::vector<std::string> labels;
  std::string runner_group;
  bool ephemeral = true;
  /// The admission this registration was planned under (0: none); it uses
  /// one of the admission's units instead of queueing behind them.
  uint64_t admission = 0;
  /// Actor-clock time after which the caller no longer waits: a request
  /// still queued then fails with errc::timeout instead of being sent
  /// (0: no deadline).
  caf::timespan deadline{0};
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, registration_request& x) {
  return f(caf::meta::type_name("ghscale::registration_request"), x.target,
           x.runner_name, x.labels, x.runner_group, x.ephemeral, x.admission,
           x.deadline);
}

/// Asks an installation client how many of `count` registrations its
/// budget can start within `within` from now (write window, requests
/// queued ahead, pauses, earlier admissions not yet used).
struct registration_admission {
  int32_t count = 0;
  caf::timespan within{0};
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, registration_admission& x) {
  return f(caf::meta::type_name("ghscale::registration_admission"), x.count,
           x.within);
}

/// The answer: `granted` registrations are planned under `ticket` (0 when
/// none) and count as queued ahead of anyone else until they arrive, the
/// ticket is released, or `within` has passed. `next_at` is when the next
/// registration beyond them could start (actor clock).
struct admitted_registrations {
  int32_t granted = 0;
  uint64_t ticket = 0;
  caf::timespan next_at{0};
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, admitted_registrations& x) {
  return f(caf::meta::type_name("ghscale::admitted_registrations"), x.granted,
           x.ticket, x.next_at);
}

struct runner_registration {
  int64_t runner_id = 0; // 0 for registration-token mode
  secret_string config;  // encoded JIT config or registration token
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, runner_registration& x) {
  return f(caf::meta::type_name("ghscale::runner_registration"), x.runner_id,
           x.config);
}

struct job_status_query {
  repository_ref repository;
  int64_t job_id = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_status_query& x) {
  return f(caf::meta::type_name("ghscale::job_status_query"), x.repository,
           x.job_id);
}

struct runner_list {
  std::vector<runner_info> runners;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, runner_list& x) {
  return f(caf::meta::type_name("ghscale::runner_list"), x.runners);
}

struct runner_removal {
  repository_ref target;
  int64_t runner_id = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, runner_removal& x) {
  return f(caf::meta::type_name("ghscale::runner_removal"), x.target,
           x.runner_id);
}

/// What an installation client knows of its budget, for metrics and tests.
struct budget_status {
  rate_limit primary;
  int32_t in_flight = 0;
  int32_t queued = 0;
  double write_tokens = 0; // secondary-limit bucket for mutations
  int64_t requests_sent = 0;
  int64_t retries = 0;
  int64_t token_mints = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, budget_status& x) {
  return f(caf::meta::type_name("ghscale::budget_status"), x.primary,
           x.in_flight, x.queued, x.write_tokens, x.requests_sent, x.retries,
           x.token_mints);
}

// -- poll loops (token registry) ---------------------------------------------

/// A poll loop's lease: the queue it polls, the token it holds (revoked on
/// scale-down) and its loop id (replaced when the loop goes quiet, which
/// fences out the old loop if it was only slow).
struct lease {
  std::string queue;
  std::string token;
  uint64_t loop_id = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, lease& x) {
  return f(caf::meta::type_name("ghscale::lease"), x.queue, x.token, x.loop_id);
}

enum class heartbeat_verdict : uint8_t { keep_going, stop };
std::string to_string(heartbeat_verdict x);

/// The registry's view of one queue's poll loops.
struct queue_loops {
  std::string queue;
  int32_t loops = 0;        // leases held now
  int32_t min_loops = 0;
  int32_t max_loops = 0;
  bool alarm = false;       // depth went high and has not come back to normal
  queue_depth depth;        // last sample
  int64_t scaled_up = 0;    // loops added for depth
  int64_t scaled_down = 0;  // loops revoked for depth
  int64_t revived = 0;      // loops replaced because they died or went quiet
  int64_t fenced = 0;       // heartbeats refused (revoked token, old loop id)
  /// Longest time from a replaced loop's last heartbeat (or its death, when
  /// it crashed) to its replacement's start, in seconds.
  double max_revival_seconds = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, queue_loops& x) {
  return f(caf::meta::type_name("ghscale::queue_loops"), x.queue, x.loops,
           x.min_loops, x.max_loops, x.alarm, x.depth, x.scaled_up,
           x.scaled_down, x.revived, x.fenced, x.max_revival_seconds);
}

struct registry_status {
  std::vector<queue_loops> queues;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, registry_status& x) {
  return f(caf::meta::type_name("ghscale::registry_status"), x.queues);
}

// -- reaper and job retry ------------------------------------------------------

/// A GitHub runner registration as one reconciliation saw it, with where it
/// is registered (the janitor needs both to delete it).
struct registration_seen {
  runner_info runner;
  repository_ref target;
  int64_t installation_id = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, registration_seen& x) {
  return f(caf::meta::type_name("ghscale::registration_seen"), x.runner,
           x.target, x.installation_id);
}

/// What one reconciliation pass saw of a pool: its instances on EC2 and its
/// runners' registrations on GitHub. `asked_at` is when the DescribeInstances
/// call went out (actor clock, since its epoch): runners launched after it
/// could not be listed and are left alone.
struct pool_inventory {
  std::vector<instance_info> instances;
  std::vector<registration_seen> registrations;
  /// False when some target could not be listed: no registration is then
  /// inferred missing (no orphans, no ghosts from this pass).
  bool registrations_complete = true;
  caf::timespan asked_at{0};
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pool_inventory& x) {
  return f(caf::meta::type_name("ghscale::pool_inventory"), x.instances,
           x.registrations, x.registrations_complete, x.asked_at);
}

/// One runner as the ledger knows it after a reconciliation, for the reaper.
/// Times are on the actor clock (since its epoch).
struct runner_view {
  std::string instance_id;
  std::string runner_name;
  runner_state state = runner_state::pending;
  job_key job;               // job_id 0: idle top-up or found by reconciliation
  repository_ref target;     // where it registers (empty owner if unknown)
  int64_t installation_id = 0;
  int64_t runner_id = 0;     // GitHub's id, 0 until a registration was seen
  caf::timespan launched_at{0};
  caf::timespan idle_since{0}; // ready: since when
  bool registered = false;   // a registration was seen by this pass
  bool orphan_tagged = false;  // carries the orphan tag from a previous pass
  bool bypass_removal = false; // carries the bypass tag: never touched
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, runner_view& x) {
  return f(caf::meta::type_name("ghscale::runner_view"), x.instance_id,
           x.runner_name, x.state, x.job, x.target, x.installation_id,
           x.runner_id, x.launched_at, x.idle_since, x.registered,
           x.orphan_tagged, x.bypass_removal);
}

/// The ledger's answer to a reconciliation: its runners (launched ones, not
/// requested slots) and the registrations of this pool whose instance is
/// gone (ghosts).
struct pool_view {
  std::vector<runner_view> runners;
  std::vector<registration_seen> ghosts;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, pool_view& x) {
  return f(caf::meta::type_name("ghscale::pool_view"), x.runners, x.ghosts);
}

/// What one scale-down pass did, for logs, metrics and tests.
struct reap_report {
  int32_t idle_retired = 0;
  int32_t kept_busy = 0;
  int32_t orphans_tagged = 0;
  int32_t orphans_terminated = 0;
  int32_t ghosts_deleted = 0;
  int32_t bypassed = 0;
  int32_t api_calls = 0; // EC2 and GitHub calls this pass made
  int32_t errors = 0;    // calls that failed (logged; the next pass retries)
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, reap_report& x) {
  return f(caf::meta::type_name("ghscale::reap_report"), x.idle_retired,
           x.kept_busy, x.orphans_tagged, x.orphans_terminated, x.ghosts_deleted,
           x.bypassed, x.api_calls, x.errors);
}

/// A job to re-check later: its message was acked, but the runner it got
/// may be taken by another job (reusable runners) or it got none (a
/// reusable pool over its cap). Job retry counts the attempts per job.
struct recheck {
  std::string pool;
  job_event event;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, recheck& x) {
  return f(caf::meta::type_name("ghscale::recheck"), x.pool, x.event);
}

/// A spot interruption warning for one of a pool's runners, as the ledger
/// recorded it: whether it knew the instance, and the job that still needs
/// a runner because of it (job_id 0: none).
struct interruption {
  bool known = false;
  std::string runner_name;
  int64_t runner_id = 0;
  repository_ref target;
  int64_t installation_id = 0;
  runner_spec replacement;
  /// The reservation holding the replacement's slot (0: none, either no job
  /// needs one or it waits for capacity); report its launch under this id.
  uint64_t reservation = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, interruption& x) {
  return f(caf::meta::type_name("ghscale::interruption"), x.known,
           x.runner_name, x.runner_id, x.target, x.installation_id,
           x.replacement, x.reservation);
}

// -- node --------------------------------------------------------------------

/// One line of the node's status: which child, how often it restarted.
struct child_status {
  std::string name;
  bool running = false;
  int32_t restarts = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, child_status& x) {
  return f(caf::meta::type_name("ghscale::child_status"), x.name, x.running,
           x.restarts);
}

struct node_status {
  std::vector<child_status> children;
  bool draining = false;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_status& x) {
  return f(caf::meta::type_name("ghscale::node_status"), x.children,
           x.draining);
}

// -- simulation ----------------------------------------------------------------

// -- HTTP (transport) ------------------------------------------------------------

/// One header. Names of responses are lower-cased by the engine. Values of
/// credential headers (authorization, x-amz-security-token, ...) print as
/// "***".
struct http_header {
  std::string name;
  std::string value;
};
bool is_sensitive_header(const std::string& name) noexcept;
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, http_header& x) {
  if constexpr (std::is_same<Inspector,
                             caf::detail::stringification_inspector>::value) {
    std::string shown = is_sensitive_header(x.name) ? "***" : x.value;
    return f(caf::meta::type_name("http_header"), x.name, shown);
  } else {
    return f(caf::meta::type_name("ghscale::http_header"), x.name, x.value);
  }
}
/// The value of header `name` (case-insensitive), or nullptr.
const std::string* find_header(const std::vector<http_header>& headers,
                               const std::string& name) noexcept;

/// One request for the HTTP engine. Bodies may hold secrets (SSM values, JIT
/// configs), so they are secret_strings.
struct http_request {
  std::string method = "GET";
  std::string url; // absolute: scheme://host[:port]/path[?query]
  std::vector<http_header> headers;
  secret_string body;
  caf::timespan timeout = std::chrono::seconds(30); // whole exchange
  uint64_t max_response_bytes = 8u << 20;           // larger: an error
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, http_request& x) {
  return f(caf::meta::type_name("ghscale::http_request"), x.method, x.url,
           x.headers, x.body, x.timeout, x.max_response_bytes);
}

/// Any HTTP answer, whatever its status; failing to get one (DNS, connect,
/// TLS, timeout, size limit) is a `caf::error` instead.
struct http_response {
  int32_t status = 0;
  std::vector<http_header> headers;
  secret_string body;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, http_response& x) {
  return f(caf::meta::type_name("ghscale::http_response"), x.status,
           x.headers, x.body);
}

// -- AWS credentials -----------------------------------------------------------

/// A resolved credential; `expires_at` is wall-clock time since the Unix
/// epoch (0: never expires), `source` says where it came from (for logs).
struct aws_credentials {
  std::string access_key_id;
  secret_string secret_access_key;
  secret_string session_token; // empty for long-term keys
  caf::timespan expires_at{0};
  std::string source; // "environment", "profile default", "imds role X"
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, aws_credentials& x) {
  return f(caf::meta::type_name("ghscale::aws_credentials"), x.access_key_id,
           x.secret_access_key, x.session_token, x.expires_at, x.source);
}

/// One AWS API call, unsigned, for a client's aws_caller: `api` picks the
/// token bucket and labels metrics; `what` ("SQS ReceiveMessage on URL")
/// starts every error context.
struct aws_api_call {
  std::string api;
  std::string what;
  http_request request;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, aws_api_call& x) {
  return f(caf::meta::type_name("ghscale::aws_api_call"), x.api, x.what,
           x.request);
}

/// A job as the simulated GitHub holds it: queued until a runner with
/// matching labels takes it, then running for `run_for`. `body` is the queue
/// message its webhook delivers (raw payload or the Lambda's format);
/// `duplicates` extra copies of it are delivered too.
struct sim_job {
  job_event event;
  std::string body;
  caf::timespan run_for = std::chrono::minutes(5);
  int32_t duplicates = 0;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sim_job& x) {
  return f(caf::meta::type_name("ghscale::sim_job"), x.event, x.body,
           x.run_for, x.duplicates);
}

/// A fault switched on in a simulated backend for `duration`.
///   github_5xx, github_404, github_rate_limit: `rate` of calls affected
///   ec2_capacity: CreateFleet has no capacity for `instance_type` ("" = all)
///   ec2_throttle: CreateFleet and DescribeInstances answer throttled
///   ec2_partial: CreateFleet fills only `rate` of the requested count
///   spot_interruption: at once, `rate` of the live spot instances (of
///     `instance_type`, "" = all) get EC2's two-minute warning on the
///     connected queue, then are reclaimed; `duration` is unused
struct sim_fault {
  std::string kind;
  std::string instance_type;
  double rate = 1.0;
  caf::timespan duration = std::chrono::seconds(60);
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, sim_fault& x) {
  return f(caf::meta::type_name("ghscale::sim_fault"), x.kind,
           x.instance_type, x.rate, x.duration);
}

/// Calls a backend served, by kind (API name, or API plus status).
struct api_calls {
  std::vector<std::pair<std::string, int64_t>> by_kind;
};
template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, api_calls& x) {
  return f(caf::meta::type_name("ghscale::api_calls"), x.by_kind);
}

} // namespace ghscale

CAF_ERROR_CODE_ENUM(ghscale::errc, "ghscale")

namespace std {
template <>
struct hash<ghscale::job_key> {
  size_t operator()(const ghscale::job_key& k) const noexcept {
    return std::hash<int64_t>{}(k.job_id) * 31u + static_cast<size_t>(k.run_attempt);
  }
};
} // namespace std
