#pragma once
// The system's map: the atoms, the one type-id block, and a typed interface
// for every actor of ghscale, with one comment per handler. Code that needs
// one capability of an actor takes the narrowest interface below.
#include "messages/types.hpp"

#include <caf/all.hpp>

CAF_BEGIN_TYPE_ID_BLOCK(ghscale, caf::first_custom_type_id)
  CAF_ADD_TYPE_ID(ghscale, (ghscale::repository_ref))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::job_key))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::job_event))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::queue_message))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::receive_request))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::received_batch))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::visibility_change))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::outgoing_message))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::batch_entry_error))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::batch_result))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::queue_depth))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::pending_job))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::scale_request))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::message_outcome))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::batch_outcome))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::reservation_request))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::reservation))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::runner_spec))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::launch_request))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::launched_runner))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::launch_failure))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::launch_result))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::launch_report))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::ledger_counts))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::tag))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::fleet_request))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::fleet_instance))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::fleet_error))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::fleet_result))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::instance_info))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::instance_filter))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::instance_list))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::instance_ids))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::instance_tags))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::parameter))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::secret_string))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::github_request))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::rate_limit))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::runner_info))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::github_response))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::registration_request))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::registration_admission))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::admitted_registrations))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::runner_registration))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::job_status_query))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::runner_list))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::runner_removal))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::budget_status))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::lease))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::heartbeat_verdict))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::queue_loops))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::registry_status))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::registration_seen))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::pool_inventory))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::runner_view))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::pool_view))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::interruption))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::reap_report))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::recheck))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::child_status))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::node_status))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::sim_fault))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::sim_job))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::api_calls))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::http_header))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::http_request))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::http_response))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::aws_credentials))
  CAF_ADD_TYPE_ID(ghscale, (ghscale::aws_api_call))

  // queue
  CAF_ADD_ATOM(ghscale, ghscale::atom, receive, "receive")
  CAF_ADD_ATOM(ghscale, ghscale::atom, remove, "remove")
  CAF_ADD_ATOM(ghscale, ghscale::atom, visibility, "visibility")
  CAF_ADD_ATOM(ghscale, ghscale::atom, enqueue, "enqueue")
  CAF_ADD_ATOM(ghscale, ghscale::atom, depth, "depth")
  // EC2 and SSM
  CAF_ADD_ATOM(ghscale, ghscale::atom, fleet, "fleet")
  CAF_ADD_ATOM(ghscale, ghscale::atom, describe, "describe")
  CAF_ADD_ATOM(ghscale, ghscale::atom, terminate, "terminate")
  CAF_ADD_ATOM(ghscale, ghscale::atom, add_tags, "add_tags")
  CAF_ADD_ATOM(ghscale, ghscale::atom, put_param, "put_param")
  CAF_ADD_ATOM(ghscale, ghscale::atom, del_param, "del_param")
  CAF_ADD_ATOM(ghscale, ghscale::atom, get_param, "get_param")
  // GitHub
  CAF_ADD_ATOM(ghscale, ghscale::atom, call, "call")
  CAF_ADD_ATOM(ghscale, ghscale::atom, mint, "mint")
  CAF_ADD_ATOM(ghscale, ghscale::atom, client, "client")
  CAF_ADD_ATOM(ghscale, ghscale::atom, lookup, "lookup")
  CAF_ADD_ATOM(ghscale, ghscale::atom, registration, "register")
  CAF_ADD_ATOM(ghscale, ghscale::atom, job_status, "job_status")
  CAF_ADD_ATOM(ghscale, ghscale::atom, runners, "runners")
  CAF_ADD_ATOM(ghscale, ghscale::atom, unregister, "unregister")
  CAF_ADD_ATOM(ghscale, ghscale::atom, budget, "budget")
  CAF_ADD_ATOM(ghscale, ghscale::atom, admit, "admit")
  CAF_ADD_ATOM(ghscale, ghscale::atom, release, "release")
  // pipeline
  CAF_ADD_ATOM(ghscale, ghscale::atom, launch, "launch")
  CAF_ADD_ATOM(ghscale, ghscale::atom, reserve, "reserve")
  CAF_ADD_ATOM(ghscale, ghscale::atom, report, "report")
  CAF_ADD_ATOM(ghscale, ghscale::atom, observe, "observe")
  CAF_ADD_ATOM(ghscale, ghscale::atom, counts, "counts")
  CAF_ADD_ATOM(ghscale, ghscale::atom, scale, "scale")
  CAF_ADD_ATOM(ghscale, ghscale::atom, flush, "flush")
  CAF_ADD_ATOM(ghscale, ghscale::atom, poll, "poll")
  CAF_ADD_ATOM(ghscale, ghscale::atom, drain, "drain")
  CAF_ADD_ATOM(ghscale, ghscale::atom, status, "status")
  CAF_ADD_ATOM(ghscale, ghscale::atom, reconcile, "reconcile")
  // poll loops, scale-down, job retry
  CAF_ADD_ATOM(ghscale, ghscale::atom, acquire, "acquire")
  CAF_ADD_ATOM(ghscale, ghscale::atom, heartbeat, "heartbeat")
  CAF_ADD_ATOM(ghscale, ghscale::atom, revoke, "revoke")
  CAF_ADD_ATOM(ghscale, ghscale::atom, reap, "reap")
  CAF_ADD_ATOM(ghscale, ghscale::atom, recheck, "recheck")
  CAF_ADD_ATOM(ghscale, ghscale::atom, start, "start")
  CAF_ADD_ATOM(ghscale, ghscale::atom, tick, "tick")
  CAF_ADD_ATOM(ghscale, ghscale::atom, interrupt, "interrupt")
  // transport
  CAF_ADD_ATOM(ghscale, ghscale::atom, http, "http")
  CAF_ADD_ATOM(ghscale, ghscale::atom, http_done, "http_done")
  CAF_ADD_ATOM(ghscale, ghscale::atom, credentials, "creds")
  CAF_ADD_ATOM(ghscale, ghscale::atom, refresh, "refresh")
  // simulation control
  CAF_ADD_ATOM(ghscale, ghscale::atom, inject, "inject")
  CAF_ADD_ATOM(ghscale, ghscale::atom, connect, "connect")
  CAF_ADD_ATOM(ghscale, ghscale::atom, online, "online")
  CAF_ADD_ATOM(ghscale, ghscale::atom, finished, "finished")
  CAF_ADD_ATOM(ghscale, ghscale::atom, stats, "stats")
  // supervision: a relay is pointed at its child's current incarnation
  CAF_ADD_ATOM(ghscale, ghscale::atom, rebind, "rebind")
CAF_END_TYPE_ID_BLOCK(ghscale)

namespace ghscale {

// -- backends: embedded (actors/embedded) or real (actors/clients) -----------

/// A queue with SQS semantics (embedded queue, or SQS).
using queue_actor = caf::typed_actor<
  // ReceiveMessage: answers when messages are visible or `wait` has passed.
  caf::replies_to<atom::receive, receive_request>::with<received_batch>,
  // DeleteMessageBatch, by receipt; per-entry results.
  caf::replies_to<atom::remove, std::vector<std::string>>::with<batch_result>,
  // ChangeMessageVisibilityBatch; per-entry results.
  caf::replies_to<atom::visibility,
                  std::vector<visibility_change>>::with<batch_result>,
  // SendMessageBatch; per-entry results (ids are the entry indexes).
  caf::replies_to<atom::enqueue,
                  std::vector<outgoing_message>>::with<batch_result>,
  // GetQueueAttributes: approximate depth.
  caf::replies_to<atom::depth>::with<queue_depth>>;

/// The embedded queue: a queue_actor plus its own timer. Hand it out as a
/// queue_actor (the handle converts implicitly).
using embedded_queue_actor = queue_actor::extend<
  // Internal: a timer fired (visibility or delay expiry, long-poll deadline).
  caf::reacts_to<atom::poll>,
  // Internal (durable queues): commit, in one transaction, every send that
  // arrived since the last commit, and answer them.
  caf::reacts_to<atom::flush>>;

/// EC2: the calls ghscale makes.
using ec2_actor = caf::typed_actor<
  // CreateFleet (instant): instances that came up plus Errors[]; a throttled
  // call is an error `errc::throttled`.
  caf::replies_to<atom::fleet, fleet_request>::with<fleet_result>,
  // DescribeInstances with tag filters (all pages).
  caf::replies_to<atom::describe, instance_filter>::with<instance_list>,
  // TerminateInstances; per-instance results.
  caf::replies_to<atom::terminate, instance_ids>::with<batch_result>,
  // CreateTags on instances (the reaper marks orphans); all succeed or the
  // call fails.
  caf::replies_to<atom::add_tags, instance_tags>::with<batch_result>>;

/// SSM Parameter Store: how an instance receives its runner config.
using ssm_actor = caf::typed_actor<
  // PutParameter as SecureString; answers with the parameter's name.
  caf::replies_to<atom::put_param, parameter>::with<std::string>,
  // DeleteParameter; answers with the parameter's name.
  caf::replies_to<atom::del_param, std::string>::with<std::string>>;

/// SSM on the real wire also reads parameters (the App's private key).
using ssm_client_actor = ssm_actor::extend<
  // GetParameter with decryption; answers with the value.
  caf::replies_to<atom::get_param, std::string>::with<secret_string>>;

/// GitHub's REST API, one request at a time; budget is the caller's business.
using github_api_actor = caf::typed_actor<
  // Performs one call; HTTP errors are responses (status >= 400), transport
  // failures are `caf::error`s.
  caf::replies_to<atom::call, github_request>::with<github_response>>;

// -- transport: the HTTP engine and AWS credentials ----------------------------

/// The HTTP engine: libcurl's multi interface on its own thread, bridged into
/// CAF. Connection reuse, per-request timeouts, a bound on requests in flight.
using http_actor = caf::typed_actor<
  // Performs one request; an HTTP error status is still a response.
  caf::replies_to<atom::http, http_request>::with<http_response>>;

/// The engine's actor side: its thread reports each finished transfer.
using http_engine_actor = http_actor::extend<
  // Internal: transfer `id` produced a response.
  caf::reacts_to<atom::http_done, uint64_t, http_response>,
  // Internal: transfer `id` failed (what and where in the error).
  caf::reacts_to<atom::http_done, uint64_t, caf::error>>;

/// AWS credentials from the chain (environment, shared files, IMDSv2),
/// cached and refreshed before they expire, one refresh at a time.
using aws_credentials_actor = caf::typed_actor<
  // The current credentials; resolves the chain on first use.
  caf::replies_to<atom::credentials>::with<aws_credentials>,
  // Internal: refresh ahead of expiry.
  caf::reacts_to<atom::refresh>>;

/// Performs the signed AWS calls of one service client (SQS, EC2, SSM): a
/// client-side token bucket per API, SigV4 with current credentials, and
/// retries of throttling, 5xx and transport failures with jittered backoff.
using aws_caller_actor = caf::typed_actor<
  // Signs and sends one call; answers the final response (a success, an
  // error answer not worth retrying, or the last one when attempts run out),
  // or an error when no answer came (transport, credentials, rate limit).
  caf::replies_to<atom::call, aws_api_call>::with<http_response>,
  // Internal: call `id` may go (its backoff is over or a token came).
  caf::reacts_to<atom::flush, uint64_t>>;

// -- the webhook's way into the queue ------------------------------------------

/// A delivery the webhook accepted, on its way into the queue: the body to
/// send, and what to call once the queue has it (`caf::none`) or not (why).
/// Local only: `done` answers an HTTP client of this process.
struct relayed_delivery {
  std::string body;
  std::function<void(const caf::error&)> done;
};
using relayed_delivery_ptr = std::shared_ptr<relayed_delivery>;

} // namespace ghscale

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(ghscale::relayed_delivery_ptr)

namespace ghscale {

/// Bridges the HTTP server's threads into the webhook queue: one long-lived
/// actor, so a delivery costs two messages and no actor of its own.
using delivery_relay_actor = caf::typed_actor<
  // Sends the body to the queue and calls `done` with the outcome.
  caf::reacts_to<atom::enqueue, relayed_delivery_ptr>>;

// -- GitHub App and installation clients ---------------------------------------

/// The part of an installation client that registers runners (launcher).
using runner_registrar_actor = caf::typed_actor<
  // JIT config (ephemeral) or registration token (reusable), top priority;
  // `errc::timeout` if its deadline passes before it could be sent,
  // `errc::shutting_down` once the client drains.
  caf::replies_to<atom::registration,
                  registration_request>::with<runner_registration>>;

/// The part that plans registrations against the write budget (scaler): a
/// decision launches no more runners than can register in time.
using registration_planner_actor = caf::typed_actor<
  // How many of the registrations can start within the window; those
  // granted are set aside for the ticket.
  caf::replies_to<atom::admit,
                  registration_admission>::with<admitted_registrations>,
  // The ticket's holder is done: its unused registrations are set free.
  caf::reacts_to<atom::release, uint64_t>>;

/// What gives work back on a drain (scalers, GitHub Apps).
using drain_actor = caf::typed_actor<
  // Stop taking work and give back what is held, its messages visible again
  // after the delay (so that no long poll still out in a draining loop
  // receives them again); answers at once.
  caf::replies_to<atom::drain, caf::timespan>::with<bool>>;

/// The part that checks whether a job still waits (scaler, job retry).
using job_checker_actor = caf::typed_actor<
  // The job's status: queued, in_progress, completed or waiting.
  caf::replies_to<atom::job_status, job_status_query>::with<std::string>>;

/// The part that cleans registrations up (reaper).
using runner_janitor_actor = caf::typed_actor<
  // All runners of a target (every page), lowest priority.
  caf::replies_to<atom::runners, repository_ref>::with<runner_list>,
  // Deletes one runner registration, lowest priority.
  caf::replies_to<atom::unregister, runner_removal>::with<int64_t>>;

/// The only actor that talks to GitHub for one installation: token cache,
/// rate-limit budget, priority queue, retries.
using installation_client_actor = runner_registrar_actor
  ::extend_with<registration_planner_actor>
  ::extend_with<job_checker_actor>
  ::extend_with<runner_janitor_actor>
  ::extend<
    // Drain: queued requests fail with errc::shutting_down (a registration
    // gives its runner's job back), new ones are refused; answers at once.
    caf::replies_to<atom::drain>::with<bool>,
    // Budget snapshot (rate limits, queue, counters).
    caf::replies_to<atom::budget>::with<budget_status>,
    // Internal: the next queued request may go now.
    caf::reacts_to<atom::flush>>;

/// Owns the App's private key; mints tokens and hands out installation
/// clients, spawned lazily, one per installation.
using github_app_actor = caf::typed_actor<
  // The client of this installation (spawned on first use).
  caf::replies_to<atom::client, int64_t>::with<installation_client_actor>,
  // The installation that owns an org (repo empty) or a repository, for
  // events that carry none; cached, and looked up again after its token
  // mint answered 404 (the App was reinstalled).
  caf::replies_to<atom::lookup, repository_ref>::with<int64_t>,
  // Mints an installation token with a fresh or cached App JWT; the
  // response carries the token in `secret` and its expiry.
  caf::replies_to<atom::mint, int64_t>::with<github_response>,
  // Drains every installation client (the delay is for the drains of
  // scalers: the App holds no messages). Answers once all clients did.
  caf::replies_to<atom::drain, caf::timespan>::with<bool>>;

// -- the scaling pipeline ----------------------------------------------------

/// Launches runners: one CreateFleet per request, spot to on-demand failover,
/// then a registration per instance handed over through SSM.
using fleet_launcher_actor = caf::typed_actor<
  // Launch; every spec index appears in exactly one list of the result.
  caf::replies_to<atom::launch, launch_request>::with<launch_result>,
  // Terminate instances (failed registrations, scale-down).
  caf::replies_to<atom::terminate, instance_ids>::with<batch_result>,
  // Internal: retry the throttled CreateFleet of launch `id`.
  caf::reacts_to<atom::flush, uint64_t>>;

/// The narrow part of the ledger that only learns lifecycle events (poller).
using lifecycle_sink_actor = caf::typed_actor<
  // A workflow_job in_progress / completed event: the runner it names is
  // running, then completed (ephemeral) or ready again (reusable).
  caf::reacts_to<atom::observe, job_event>>;

/// The part of the ledger the fleet launcher tells as each runner is
/// configured, before its whole launch is over: a runner may boot and take
/// a job while the rest of its launch still waits for GitHub's budget.
using launch_recorder_actor = caf::typed_actor<
  // A runner of reservation `id` is configured: it fills its slot now (its
  // job is served from here on); the launch's report later skips it.
  caf::reacts_to<atom::observe, uint64_t, launched_runner>>;

/// The part of the ledger the reaper uses.
using ledger_reconciler_actor = caf::typed_actor<
  // Applies what EC2 and GitHub show (states, registrations, gone
  // instances) and answers the pool's runners and its ghost registrations.
  caf::replies_to<atom::reconcile, pool_inventory>::with<pool_view>,
  // These instances were terminated on purpose (scale-down, orphans).
  caf::reacts_to<atom::terminate, instance_ids>>;

/// The part of the ledger job retry asks.
using job_tracker_actor = caf::typed_actor<
  // Whether a job has a runner requested, launched or running for it (in a
  // reusable pool: whether any runner is on its way or idle).
  caf::replies_to<atom::recheck, job_key>::with<bool>>;

/// Each runner's lifecycle for one pool, and counts the scaler trusts.
using runner_ledger_actor = lifecycle_sink_actor
  ::extend_with<launch_recorder_actor>
  ::extend_with<ledger_reconciler_actor>
  ::extend_with<job_tracker_actor>
  ::extend<
  // Atomically reserves capacity under the cap; `errc::not_ready` while
  // reconciling after a (re)start.
  caf::replies_to<atom::reserve, reservation_request>::with<reservation>,
  // What came of a reservation; unfilled slots are released.
  caf::replies_to<atom::report, launch_report>::with<ledger_counts>,
  // Exact counts per state, and the jobs waiting for a replacement.
  caf::replies_to<atom::counts>::with<ledger_counts>,
  // The jobs that lost their runner to another job and have none on its
  // way, as queued events: a drain puts them back on their queue, since a
  // restarted ledger would not know them.
  caf::replies_to<atom::drain>::with<std::vector<job_event>>,
  // A spot interruption warning for an instance: marks its runner (it no
  // longer takes jobs) and, if its job had not started, reserves a
  // replacement slot for it under the cap.
  caf::replies_to<atom::interrupt, std::string>::with<interruption>,
  // Rebuild from EC2 (instances tagged with the pool).
  caf::reacts_to<atom::reconcile>>;

/// One per pool: batching window, dedupe, capacity decision, outcomes.
using scaler_actor = caf::typed_actor<
  // Queued jobs (pollers send one per request, so each settles on its
  // own); answers one outcome per receipt once every job of the request is
  // settled: its runner configured, proven not needed, or given back. A
  // delivery of a job already being served waits for that job's outcome.
  caf::replies_to<atom::scale, scale_request>::with<batch_outcome>,
  // Drain: jobs waiting for capacity or budget are given back, later
  // requests too, visible again after the delay (or their backoff, if
  // longer); decisions under way finish.
  caf::replies_to<atom::drain, caf::timespan>::with<bool>,
  // Internal: the GitHub budget may admit the jobs waiting for it now.
  caf::reacts_to<atom::tick>,
  // Internal: time to look for jobs that lost their runner to another job
  // and wait for a replacement with no delivery of theirs left to trigger
  // a decision.
  caf::reacts_to<atom::reconcile>,
  // A spot interruption warning for an instance (EC2's event): deregisters
  // its runner and launches a replacement for its job (on-demand where the
  // pool says so). Answers whether the instance was this pool's.
  caf::replies_to<atom::interrupt, std::string>::with<bool>,
  // Internal: the batching window closed.
  caf::reacts_to<atom::flush, uint64_t>>;

/// One long-poll loop on one queue, holding a lease.
using poller_actor = caf::typed_actor<
  // Internal: receive the next batch.
  caf::reacts_to<atom::poll>,
  // Internal: time for a heartbeat.
  caf::reacts_to<atom::heartbeat>,
  // Internal: extend the visibility of the messages the loop holds.
  caf::reacts_to<atom::visibility>,
  // Internal: apply the outcomes gathered so far.
  caf::reacts_to<atom::flush>,
  // Stop receiving; keep the messages held hidden until their outcomes
  // come, apply them, then quit. Answers once the loop has stopped.
  caf::replies_to<atom::drain>::with<bool>>;

// -- poll loops, scale-down, job retry ----------------------------------------

/// The part of the registry a poll loop talks to.
using lease_keeper_actor = caf::typed_actor<
  // A loop's heartbeat; `stop` for revoked tokens and replaced loop ids.
  caf::replies_to<atom::heartbeat, lease>::with<heartbeat_verdict>>;

/// The part of a queue the registry samples.
using queue_depth_actor = caf::typed_actor<
  // GetQueueAttributes: approximate depth.
  caf::replies_to<atom::depth>::with<queue_depth>>;

/// Starts and stops poll loops: the poller supervisor.
using poll_loops_actor = caf::typed_actor<
  // Starts a loop holding `lease`; answers its handle (the registry
  // monitors it, so a crash is replaced at once).
  caf::replies_to<atom::start, lease>::with<poller_actor>,
  // Drains every loop; answers when all have stopped.
  caf::replies_to<atom::drain>::with<bool>,
  // Kills one loop of the queue at random, as a crash would (chaos).
  caf::reacts_to<atom::inject, std::string>>;

/// Leases of poll loops per queue, with heartbeats and fencing; scales each
/// queue's loops with its depth.
using token_registry_actor = lease_keeper_actor::extend<
  // Scale-up: a new lease for a queue, and a loop holding it.
  caf::replies_to<atom::acquire, std::string>::with<lease>,
  // Scale-down: revokes one lease of the queue at random, never below its
  // minimum; its loop stops at its next heartbeat. Answers whether one was.
  caf::replies_to<atom::revoke, std::string>::with<bool>,
  // Loops per queue and what the registry did.
  caf::replies_to<atom::status>::with<registry_status>,
  // Stops starting loops and drains them all; answers when they stopped.
  caf::replies_to<atom::drain>::with<bool>,
  // Internal: check heartbeats and sample depths.
  caf::reacts_to<atom::tick>>;

/// Scale-down for one pool.
using reaper_actor = caf::typed_actor<
  // One pass now (also run on its period).
  caf::replies_to<atom::reap>::with<reap_report>,
  // Internal: the period elapsed.
  caf::reacts_to<atom::tick>>;

/// Delayed re-checks of jobs whose message was acked without a runner of
/// their own.
using job_retry_actor = caf::typed_actor<
  // Re-check this job after its backoff; re-inject it if still queued and
  // no runner is on its way.
  caf::reacts_to<atom::recheck, recheck>,
  // Internal: the re-check with this id is due.
  caf::reacts_to<atom::tick, uint64_t>>;

/// The process root: startup order, supervision, ordered shutdown.
using node_actor = caf::typed_actor<
  // Ordered, graceful drain within timeouts.drain; answers when everything
  // has stopped: true if everything drained within that budget.
  caf::replies_to<atom::drain>::with<bool>,
  // Children and their restart counts.
  caf::replies_to<atom::status>::with<node_status>,
  // Kills the named child as a crash would (chaos tests, `crash` traces).
  caf::reacts_to<atom::inject, std::string>>;

// -- simulation (in-process backends) ------------------------------------------

/// Simulated EC2 + SSM: boot delays, capacity errors, partial fills,
/// throttling; booted instances bring their runner online in sim GitHub.
using sim_cloud_actor = ec2_actor::extend_with<ssm_actor>::extend<
  // Turn a fault on for a while (capacity, throttling, partial fills,
  // spot interruptions).
  caf::reacts_to<atom::inject, sim_fault>,
  // The queue EC2's events (spot interruption warnings) are delivered to.
  caf::reacts_to<atom::connect, queue_actor>,
  // Internal: the spot instance warned two minutes ago is reclaimed now.
  caf::reacts_to<atom::interrupt, std::string>,
  // Internal: an instance finished booting.
  caf::reacts_to<atom::online, std::string>,
  // The runner on this instance finished (ephemeral): shut it down.
  caf::reacts_to<atom::finished, std::string>,
  // Calls served, by API.
  caf::replies_to<atom::stats>::with<api_calls>,
  // Internal: deliver the delayed answer with this id.
  caf::reacts_to<atom::flush, uint64_t>>;

/// Simulated GitHub: the REST API plus world control for scenarios.
using sim_github_actor = github_api_actor::extend<
  // The webhook sink (queue) and the EC2 world whose instances run jobs.
  caf::reacts_to<atom::connect, queue_actor, sim_cloud_actor>,
  // A job is queued on GitHub (and its webhook delivered to the sink).
  caf::reacts_to<atom::inject, sim_job>,
  // Turn a fault on for a while (5xx, 404, rate limits).
  caf::reacts_to<atom::inject, sim_fault>,
  // Instance `id` booted with this registration: its runner comes online.
  caf::reacts_to<atom::online, std::string, secret_string>,
  // Internal: the job running on runner `id` finished.
  caf::reacts_to<atom::finished, int64_t>,
  // Instance `id`, handed runner config `config` (empty: none yet), is gone
  // (terminated or reclaimed): its runner goes offline but stays registered,
  // and a job it was running fails.
  caf::reacts_to<atom::terminate, std::string, secret_string>,
  // Calls served, by operation and status.
  caf::replies_to<atom::stats>::with<api_calls>,
  // Internal: deliver the delayed answer with this id.
  caf::reacts_to<atom::flush, uint64_t>>;

/// Registers every ghscale message type; call on each node before the
/// actor_system is constructed.
void register_types(caf::actor_system_config& cfg);

} // namespace ghscale
