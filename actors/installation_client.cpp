#include "actors/installation_client.hpp"

#include "actors/backoff.hpp"
#include "actors/clock.hpp"
#include "actors/ops/log.hpp"

#include <algorithm>
#include <iterator>
#include <memory>
#include <string>
#include <utility>

namespace ghscale {

namespace {

using namespace std::chrono_literals;
using client_ptr =
  installation_client_actor::stateful_pointer<installation_client_state>;

/// GitHub's secondary limit on content-creating requests counts per minute.
/// The window kept here is a second longer: GitHub counts arrivals, we count
/// starts, and a write delayed less than the one it replaces in the window
/// would otherwise land as the minute's (L+1)th.
constexpr caf::timespan write_window_length = 61s;
/// A token can answer 404 for a few seconds after its mint while GitHub
/// replicates it; such a 404 is retried, not believed.
constexpr caf::timespan replication_lag = 10s;
/// GitHub's advice for a secondary limit answered without retry-after.
constexpr caf::timespan default_secondary_pause = 60s;
/// Even with a reset time in the past, wait this long after a primary 403.
constexpr caf::timespan min_primary_pause = 1s;
constexpr caf::timespan retry_base = 1s;
constexpr caf::timespan retry_max = 60s;
constexpr double retry_jitter = 0.2;

// -- response classification ---------------------------------------------------

/// What a GitHub answer asks of the client.
enum class reaction {
  succeed,
  reauthenticate,  // 401: the token is no good
  secondary_limit, // 403/429 with retry-after: everything waits
  primary_limit,   // 403 with the hourly budget spent
  retry,           // transient: 5xx, or a 404 right after the mint
  not_found,
  reject,
};

reaction classify(const github_response& res, bool token_is_fresh) {
  auto status = res.status;
  if (status >= 200 && status < 300)
    return reaction::succeed;
  if (status == 401)
    return reaction::reauthenticate;
  if ((status == 403 || status == 429) && res.retry_after > 0s)
    return reaction::secondary_limit;
  if (status == 403 && res.rate.limit > 0 && res.rate.remaining == 0)
    return reaction::primary_limit;
  if (status == 429)
    return reaction::secondary_limit;
  if (status >= 500)
    return reaction::retry;
  if (status == 404)
    return token_is_fresh ? reaction::retry : reaction::not_found;
  return reaction::reject;
}

// -- small helpers --------------------------------------------------------------

/// Installation ids come from signed payloads, unbounded: gauges are per
/// App, over its installations (the lowest rate budget left, the requests
/// waiting in all).
label_set app_label(client_ptr self) {
  return {{"app", self->state.app.name}};
}

std::string member_of(client_ptr self) {
  return std::to_string(self->state.installation_id);
}

size_t queued_count(const installation_client_state& st) {
  size_t n = st.backing_off.size();
  for (auto& queue : st.queues)
    n += queue.size();
  return n;
}

bool has_queued(const installation_client_state& st) {
  return std::any_of(st.queues.begin(), st.queues.end(),
                     [](auto& queue) { return !queue.empty(); });
}

std::deque<github_work>& queue_of(installation_client_state& st,
                                  request_priority priority) {
  return st.queues[static_cast<size_t>(priority)];
}

void requeue_front(client_ptr self, github_work item) {
  auto& queue = queue_of(self->state, item.priority);
  queue.push_front(std::move(item));
}

/// Arms a `flush` for `at` unless one fires no later than that.
void arm_flush(client_ptr self, caf::timespan at) {
  auto& st = self->state;
  if (st.flush_at && *st.flush_at <= at)
    return;
  st.flush_at = at;
  self->delayed_send(self, std::max(at - now(self), caf::timespan{0}),
                     atom::flush_v);
}


bool token_usable(const installation_client_state& st, caf::timespan t) {
  return !st.token.empty() && t < st.token_usable_until;
}

/// When requests may start again, as far as the rate limits go.
caf::timespan hold_until(const installation_client_state& st) {
  auto hold = st.paused_until;
  if (st.rate.limit > 0 && st.rate.remaining == 0)
    hold = std::max(hold, st.rate.reset_at);
  return hold;
}

void finish(github_work& item, caf::expected<github_response> result) {
  item.done(std::move(result));
}

void fail(github_work& item, errc code, std::string what) {
  finish(item, caf::make_error(code, std::move(what)));
}

void fail_all_queued(client_ptr self, const caf::error& err) {
  for (auto& queue : self->state.queues) {
    auto items = std::move(queue);
    queue.clear();
    for (auto& item : items)
      item.done(err);
  }
}

/// Registrations whose caller stopped waiting are never sent: they would
/// spend a write on a runner no instance gets.
void drop_expired(client_ptr self, caf::timespan t) {
  auto& queue = queue_of(self->state, request_priority::register_runner);
  for (auto i = queue.begin(); i != queue.end();) {
    if (i->deadline == caf::timespan{0} || i->deadline > t) {
      ++i;
      continue;
    }
    auto item = std::move(*i);
    i = queue.erase(i);
    self->state.stats->add("ghscale_github_expired_total",
                           {{"op", to_string(item.request.op)}});
    fail(item, errc::timeout,
         to_string(item.request.op) + " for runner '" + item.request.runner_name
           + "': its deadline passed while it waited for GitHub's budget");
  }
}

// -- token ----------------------------------------------------------------------

void on_token(client_ptr self, github_response& res) {
  auto& st = self->state;
  auto t = now(self);
  st.minting = false;
  st.mint_failures = 0;
  st.token = std::move(res.secret);
  st.token_minted_at = t;
  ++st.token_generation;
  // A token whose lifetime is shorter than the refresh margin is still used
  // for half its life, so a short-lived token cannot cause a mint per request.
  st.token_usable_until = std::max(res.expires_at - st.app.token_refresh_before,
                                   t + (res.expires_at - t) / 2);
  log::info("installation token minted",
            {{"installation", st.installation_id},
             {"usable_for_s", to_ms(st.token_usable_until - t) / 1000}});
}

void on_mint_failure(client_ptr self, const caf::error& err) {
  auto& st = self->state;
  st.minting = false;
  ++st.mint_failures;
  auto what = describe(err);
  log::warn("installation token mint failed",
            {{"installation", st.installation_id},
             {"failures", st.mint_failures},
             {"error", what}});
  if (st.mint_failures >= st.app.max_retries) {
    st.mint_failures = 0;
    fail_all_queued(self, caf::make_error(errc::backend_failure,
                                          "token mint failed: " + what));
    return;
  }
  st.next_mint_at = now(self) + jittered_backoff(retry_base, retry_max,
                                                 st.mint_failures, retry_jitter,
                                                 st.rng);
}

void pump(client_ptr self);

/// Starts the one mint of a fresh token unless it runs or backs off.
void request_token(client_ptr self, caf::timespan t) {
  auto& st = self->state;
  if (st.minting)
    return;
  if (t < st.next_mint_at) {
    arm_flush(self, st.next_mint_at);
    return;
  }
  st.minting = true;
  ++st.token_mints;
  // The App makes its own GitHub call of up to `github_call`: leave it room.
  self->request(st.minter, 2 * st.timeouts.github_call, atom::mint_v,
                st.installation_id)
    .then(
      [self](github_response& res) {
        if (res.secret.empty() || res.expires_at <= now(self))
          on_mint_failure(self, caf::make_error(errc::backend_failure,
                                                "minted token already expired"));
        else
          on_token(self, res);
        pump(self);
      },
      [self](caf::error& err) {
        on_mint_failure(self, err);
        pump(self);
      });
}

// -- responses --------------------------------------------------------------------

void observe_rate(client_ptr self, const rate_limit& rate) {
  if (rate.limit == 0) // headers absent
    return;
  self->state.rate = rate;
  self->state.stats->set_member("ghscale_github_rate_remaining", app_label(self),
                                member_of(self), static_cast<double>(rate.remaining),
                                metrics::aggregate::min);
}

/// Retries a transiently failed request after a backoff, or gives up.
void retry_later(client_ptr self, github_work item, const std::string& status) {
  auto& st = self->state;
  auto op = to_string(item.request.op);
  if (item.attempts > st.app.max_retries) {
    log::warn("github request failed",
              {{"installation", st.installation_id}, {"op", op},
               {"status", status}, {"attempts", item.attempts}});
    fail(item, errc::backend_failure,
         op + ": " + status + " after " + std::to_string(item.attempts)
           + " attempts");
    return;
  }
  auto delay = jittered_backoff(retry_base, retry_max, item.attempts,
                                retry_jitter, st.rng);
  ++st.retries;
  st.stats->add("ghscale_github_retries_total", {{"op", op}});
  log::info("github request retry",
            {{"installation", st.installation_id}, {"op", op},
             {"status", status}, {"attempt", item.attempts},
             {"delay_ms", to_ms(delay)}});
  st.backing_off.emplace(now(self) + delay, std::move(item));
}

/// One log line per pause: the requests in flight that meet the same limit
/// only extend it.
void pause_all(client_ptr self, caf::timespan until, const char* why) {
  auto& st = self->state;
  auto t = now(self);
  bool already_paused = st.paused_until > t;
  st.paused_until = std::max(st.paused_until, until);
  if (already_paused)
    return;
  log::warn("github requests paused",
            {{"installation", st.installation_id}, {"reason", why},
             {"for_ms", to_ms(st.paused_until - t)}});
}

void replace_lost_registration(client_ptr self, github_work item);

/// A JIT config answered 409 after an earlier attempt whose answer never
/// came (5xx, timeout): that attempt registered the runner, and its config
/// is lost with the answer.
bool lost_registration(const github_work& item, const github_response& res) {
  return item.request.op == github_op::generate_jit_config && res.status == 409
         && item.attempts > 1 && !item.replaced_lost;
}

void on_response(client_ptr self, github_work item, github_response& res) {
  auto& st = self->state;
  auto t = now(self);
  auto op = to_string(item.request.op);
  auto status = std::to_string(res.status);
  st.stats->add("ghscale_github_requests_total", {{"op", op}, {"status", status}});
  observe_rate(self, res.rate);
  switch (classify(res, t - item.token_minted_at < replication_lag)) {
    case reaction::succeed:
      finish(item, std::move(res));
      return;
    case reaction::reauthenticate:
      if (item.reauthenticated) {
        fail(item, errc::rejected, op + ": 401 " + res.message);
        return;
      }
      item.reauthenticated = true;
      // Only the token this request used is known bad; a newer one may be fine.
      if (item.token_generation == st.token_generation)
        st.token = {};
      requeue_front(self, std::move(item));
      return;
    case reaction::secondary_limit:
      pause_all(self,
                t + (res.retry_after > 0s ? res.retry_after
                                          : default_secondary_pause),
                "secondary_limit");
      requeue_front(self, std::move(item));
      return;
    case reaction::primary_limit:
      pause_all(self, std::max(res.rate.reset_at, t + min_primary_pause),
                "primary_limit");
      requeue_front(self, std::move(item));
      return;
    case reaction::retry:
      retry_later(self, std::move(item), status);
      return;
    case reaction::not_found:
      fail(item, errc::not_found, op + ": 404 " + res.message);
      return;
    case reaction::reject:
      if (lost_registration(item, res)) {
        replace_lost_registration(self, std::move(item));
        return;
      }
      // Deleting a runner that runs a job: the caller keeps the runner.
      if (item.request.op == github_op::delete_runner && res.status == 422) {
        fail(item, errc::runner_busy, op + ": 422 " + res.message);
        return;
      }
      fail(item, errc::rejected, op + ": " + status + " " + res.message);
      return;
  }
}

void on_transport_error(client_ptr self, github_work item, const caf::error& err) {
  auto status = err == caf::sec::request_timeout ? std::string{"timeout"}
                                                  : describe(err);
  self->state.stats->add("ghscale_github_requests_total",
                         {{"op", to_string(item.request.op)},
                          {"status", err == caf::sec::request_timeout
                                       ? "timeout" : "error"}});
  retry_later(self, std::move(item), status);
}

// -- dispatching ------------------------------------------------------------------

github_work take_in_flight(client_ptr self, uint64_t serial) {
  auto& in_flight = self->state.in_flight;
  auto i = in_flight.find(serial);
  auto item = std::move(i->second);
  in_flight.erase(i);
  return item;
}

void send(client_ptr self, github_work item, caf::timespan t) {
  auto& st = self->state;
  ++item.attempts;
  item.token_generation = st.token_generation;
  item.token_minted_at = st.token_minted_at;
  ++st.requests_sent;
  if (is_mutation(item.request.op))
    st.writes.record(t);
  auto call = item.request;
  call.credential = st.token;
  auto serial = st.next_serial++;
  st.in_flight.emplace(serial, std::move(item));
  self->request(st.api, st.timeouts.github_call, atom::call_v, std::move(call))
    .then(
      [self, serial](github_response& res) {
        on_response(self, take_in_flight(self, serial), res);
        pump(self);
      },
      [self, serial](caf::error& err) {
        on_transport_error(self, take_in_flight(self, serial), err);
        pump(self);
      });
}

/// Moves requests whose backoff has passed to the front of their queues.
void release_backed_off(client_ptr self, caf::timespan t) {
  auto& st = self->state;
  auto due_end = st.backing_off.upper_bound(t);
  // Latest first, so the earliest ends up at the very front.
  for (auto i = std::make_reverse_iterator(due_end); i != st.backing_off.rend();
       ++i)
    requeue_front(self, std::move(i->second));
  st.backing_off.erase(st.backing_off.begin(), due_end);
  if (!st.backing_off.empty())
    arm_flush(self, st.backing_off.begin()->first);
}

/// The queue whose head may start now: the highest priority one, skipping
/// queues headed by a mutation while the write window is full.
std::deque<github_work>* next_startable(installation_client_state& st,
                                        caf::timespan t) {
  st.writes.forget(t);
  bool writes_open = st.writes.open();
  for (auto& queue : st.queues)
    if (!queue.empty() && (writes_open || !is_mutation(queue.front().request.op)))
      return &queue;
  return nullptr;
}

/// Starts every queued request the token, the limits and the concurrency
/// allow; arms a `flush` for when a blocking limit lifts. Runs after every
/// state change.
void pump(client_ptr self) {
  auto& st = self->state;
  auto t = now(self);
  release_backed_off(self, t);
  drop_expired(self, t);
  while (has_queued(st)) {
    if (!token_usable(st, t)) {
      request_token(self, t);
      break;
    }
    if (auto hold = hold_until(st); hold > t) {
      arm_flush(self, hold);
      break;
    }
    if (st.in_flight.size() >= static_cast<size_t>(st.app.max_concurrency))
      break;
    auto* queue = next_startable(st, t);
    if (queue == nullptr) {
      arm_flush(self, st.writes.reopens_at());
      break;
    }
    auto item = std::move(queue->front());
    queue->pop_front();
    send(self, std::move(item), t);
  }
  st.stats->set_member("ghscale_github_queue_depth", app_label(self), member_of(self),
                       static_cast<double>(queued_count(st)), metrics::aggregate::sum);
}

void enqueue(client_ptr self, request_priority priority, github_request request,
             github_completion done, caf::timespan deadline = caf::timespan{0}) {
  request.installation_id = self->state.installation_id;
  github_work item;
  item.request = std::move(request);
  item.priority = priority;
  item.deadline = deadline;
  item.done = std::move(done);
  if (self->state.draining) {
    fail(item, errc::shutting_down,
         to_string(item.request.op) + ": the installation client is draining");
    return;
  }
  queue_of(self->state, priority).push_back(std::move(item));
}

/// Deletes the runner a lost attempt registered (found by its name), then
/// asks for its JIT config again; any failure on the way fails the request.
void replace_lost_registration(client_ptr self, github_work item) {
  auto shared = std::make_shared<github_work>(std::move(item));
  shared->replaced_lost = true;
  auto name = shared->request.runner_name;
  auto give_up = [shared](const std::string& why) {
    fail(*shared, errc::rejected, "generate_jit_config: 409 for runner '"
                                    + shared->request.runner_name + "': " + why);
  };
  github_request find;
  find.op = github_op::list_runners;
  find.target = shared->request.target;
  find.runner_name = name;
  log::warn("github registration answer lost, replacing it",
            {{"installation", self->state.installation_id}, {"runner", name}});
  enqueue(self, request_priority::register_runner, std::move(find),
          [self, shared, name, give_up](caf::expected<github_response> found) {
            if (!found) {
              give_up(describe(found.error()));
              return;
            }
            auto& runners = found->runners;
            auto i = std::find_if(runners.begin(), runners.end(),
                                  [&](const runner_info& r) { return r.name == name; });
            if (i == runners.end()) {
              give_up("no runner of that name to replace");
              return;
            }
            github_request remove;
            remove.op = github_op::delete_runner;
            remove.target = shared->request.target;
            remove.runner_id = i->id;
            enqueue(self, request_priority::register_runner, std::move(remove),
                    [self, shared, give_up](caf::expected<github_response> removed) {
                      if (!removed)
                        give_up(describe(removed.error()));
                      else
                        requeue_front(self, std::move(*shared));
                    });
          });
}

// -- public requests --------------------------------------------------------------

github_request registration_call(const registration_request& req,
                                 int64_t runner_group_id) {
  github_request call;
  call.op = req.ephemeral ? github_op::generate_jit_config
                          : github_op::create_registration_token;
  call.target = req.target;
  call.runner_name = req.runner_name;
  call.labels = req.labels;
  call.runner_group = req.runner_group;
  call.runner_group_id = runner_group_id;
  return call;
}

void register_runner(client_ptr self, const registration_request& req,
                     int64_t runner_group_id,
                     caf::typed_response_promise<runner_registration> rp) {
  enqueue(self, request_priority::register_runner,
          registration_call(req, runner_group_id),
          [rp, ephemeral = req.ephemeral](caf::expected<github_response> res) mutable {
            if (!res)
              rp.deliver(res.error());
            else
              rp.deliver(runner_registration{ephemeral ? res->runner_id : 0,
                                             std::move(res->secret)});
          },
          req.deadline);
}

// -- planning ------------------------------------------------------------------

/// Drops admissions whose window has passed; answers the units still set
/// aside.
int64_t admitted_units(installation_client_state& st, caf::timespan t) {
  int64_t units = 0;
  for (auto i = st.admissions.begin(); i != st.admissions.end();) {
    if (i->second.until <= t) {
      i = st.admissions.erase(i);
      continue;
    }
    units += i->second.units;
    ++i;
  }
  return units;
}

/// A registration that arrives under its admission uses one of its units.
void use_admission(installation_client_state& st, uint64_t ticket) {
  auto i = st.admissions.find(ticket);
  if (i == st.admissions.end())
    return;
  if (--i->second.units <= 0)
    st.admissions.erase(i);
}

/// Mutations waiting at registration priority: they start before any newly
/// admitted registration.
int64_t registrations_ahead(const installation_client_state& st) {
  auto mutations = [](const github_work& w) { return is_mutation(w.request.op); };
  auto& queue = st.queues[static_cast<size_t>(request_priority::register_runner)];
  auto ahead = std::count_if(queue.begin(), queue.end(), mutations);
  for (auto& [at, w] : st.backing_off)
    ahead += w.priority == request_priority::register_runner && mutations(w) ? 1 : 0;
  return ahead;
}

/// How many of `req.count` registrations the write window, the primary
/// limit and any pause let start within `req.within`, after everything
/// queued or admitted before them; those are set aside under a new ticket.
admitted_registrations admit(client_ptr self, const registration_admission& req) {
  auto& st = self->state;
  auto t = now(self);
  admitted_registrations out;
  auto ahead = registrations_ahead(st) + admitted_units(st, t);
  auto from = std::max(t, hold_until(st));
  auto deadline = t + req.within;
  st.writes.forget(t);
  auto starts = st.writes.next_starts(ahead + std::max(req.count, 0) + 1, from);
  for (int64_t i = ahead; i < ahead + req.count; ++i)
    if (starts[static_cast<size_t>(i)] <= deadline)
      ++out.granted;
  // The hourly budget, if GitHub told us it runs out before the window ends.
  if (st.rate.limit > 0 && st.rate.reset_at > deadline) {
    auto left = st.rate.remaining - static_cast<int64_t>(queued_count(st)) - ahead;
    out.granted = static_cast<int32_t>(
      std::clamp<int64_t>(left, 0, out.granted));
  }
  if (st.draining)
    out.granted = 0;
  out.next_at = starts[static_cast<size_t>(ahead + out.granted)];
  if (st.rate.limit > 0 && st.rate.remaining <= ahead + out.granted)
    out.next_at = std::max(out.next_at, st.rate.reset_at);
  if (out.granted > 0) {
    out.ticket = st.next_ticket++;
    st.admissions.emplace(out.ticket, admission_hold{out.granted, deadline});
  }
  return out;
}

/// Drain: every queued request fails (a registration's runner gives its job
/// back), and new ones are refused; requests in flight finish.
void drain(client_ptr self) {
  auto& st = self->state;
  if (st.draining)
    return;
  st.draining = true;
  st.admissions.clear();
  auto err = caf::make_error(errc::shutting_down,
                             "the installation client is draining");
  auto backing_off = std::move(st.backing_off);
  st.backing_off.clear();
  for (auto& [at, item] : backing_off)
    item.done(err);
  fail_all_queued(self, err);
  log::info("installation client drained",
            {{"installation", st.installation_id},
             {"in_flight", static_cast<uint64_t>(st.in_flight.size())}});
}

/// A JIT config names its runner group by id: "Default" is 1 everywhere (and
/// the only group of a repository); any other org group is looked up once.
void with_runner_group(client_ptr self, const registration_request& req,
                       std::function<void(caf::expected<int64_t>)> then) {
  constexpr int64_t default_group = 1;
  if (!req.ephemeral || !req.target.org_level() || req.runner_group.empty()
      || req.runner_group == "Default") {
    then(default_group);
    return;
  }
  auto key = req.target.owner + "/" + req.runner_group;
  auto& st = self->state;
  if (auto i = st.runner_groups.find(key); i != st.runner_groups.end()) {
    then(i->second);
    return;
  }
  // Registrations arriving while the lookup runs wait for its answer.
  auto& waiting = st.runner_group_waiters[key];
  waiting.push_back(std::move(then));
  if (waiting.size() > 1)
    return;
  github_request call;
  call.op = github_op::get_runner_group;
  call.target = req.target;
  call.runner_group = req.runner_group;
  enqueue(self, request_priority::register_runner, std::move(call),
          [self, key](caf::expected<github_response> res) {
            caf::expected<int64_t> group = caf::make_error(
              errc::rejected, "runner group '" + key + "' does not exist");
            if (!res)
              group = std::move(res.error());
            else if (res->resource_id != 0)
              group = self->state.runner_groups[key] = res->resource_id;
            auto waiters = std::move(self->state.runner_group_waiters[key]);
            self->state.runner_group_waiters.erase(key);
            for (auto& waiter : waiters)
              waiter(group);
          });
}

/// Fetches `page` and the ones after it, then answers with all runners.
void list_runners_from(client_ptr self, repository_ref target, int32_t page,
                       std::shared_ptr<runner_list> found,
                       caf::typed_response_promise<runner_list> rp) {
  github_request call;
  call.op = github_op::list_runners;
  call.target = target;
  call.page = page;
  enqueue(self, request_priority::cleanup, std::move(call),
          [=](caf::expected<github_response> res) mutable {
            if (!res) {
              rp.deliver(res.error());
              return;
            }
            auto& runners = found->runners;
            runners.insert(runners.end(),
                           std::make_move_iterator(res->runners.begin()),
                           std::make_move_iterator(res->runners.end()));
            if (res->has_next_page)
              list_runners_from(self, target, page + 1, found, rp);
            else
              rp.deliver(std::move(*found));
          });
}

budget_status budget_of(client_ptr self) {
  auto& st = self->state;
  st.writes.forget(now(self));
  budget_status out;
  out.primary = st.rate;
  out.in_flight = static_cast<int32_t>(st.in_flight.size());
  out.queued = static_cast<int32_t>(queued_count(st));
  out.write_tokens = std::max<double>(
    0, st.app.writes_per_minute - static_cast<double>(st.writes.used()));
  out.requests_sent = st.requests_sent;
  out.retries = st.retries;
  out.token_mints = st.token_mints;
  return out;
}

} // namespace

installation_client_actor::behavior_type
installation_client(
  installation_client_actor::stateful_pointer<installation_client_state> self,
  int64_t installation_id, github_app_config app, timeouts_config timeouts,
  github_app_actor minter, github_api_actor api, metrics_ptr stats,
  uint64_t seed) {
  auto& st = self->state;
  st.installation_id = installation_id;
  st.app = std::move(app);
  st.timeouts = timeouts;
  st.minter = std::move(minter);
  st.api = std::move(api);
  st.stats = std::move(stats);
  st.rng.seed(seed);
  st.writes = write_window{st.app.writes_per_minute, write_window_length};
  self->attach_functor([stats = st.stats, app = app_label(self), member = member_of(self)] {
    for (auto name : {"ghscale_github_rate_remaining", "ghscale_github_queue_depth"})
      stats->drop_member(name, app, member);
  });
  return {
    [self](atom::registration,
           registration_request& req) -> caf::result<runner_registration> {
      use_admission(self->state, req.admission);
      auto rp = self->make_response_promise<runner_registration>();
      with_runner_group(self, req,
                        [self, rp, req](caf::expected<int64_t> group) mutable {
                          if (!group)
                            rp.deliver(std::move(group.error()));
                          else
                            register_runner(self, req, *group, rp);
                        });
      pump(self);
      return rp;
    },
    [self](atom::job_status, job_status_query& query) -> caf::result<std::string> {
      auto rp = self->make_response_promise<std::string>();
      github_request call;
      call.op = github_op::get_job;
      call.target = query.repository;
      call.job_id = query.job_id;
      enqueue(self, request_priority::check_job, std::move(call),
              [rp](caf::expected<github_response> res) mutable {
                if (!res)
                  rp.deliver(res.error());
                else
                  rp.deliver(std::move(res->job_status));
              });
      pump(self);
      return rp;
    },
    [self](atom::runners, repository_ref& target) -> caf::result<runner_list> {
      auto rp = self->make_response_promise<runner_list>();
      list_runners_from(self, std::move(target), 1,
                        std::make_shared<runner_list>(), rp);
      pump(self);
      return rp;
    },
    [self](atom::unregister, runner_removal& removal) -> caf::result<int64_t> {
      auto rp = self->make_response_promise<int64_t>();
      github_request call;
      call.op = github_op::delete_runner;
      call.target = removal.target;
      call.runner_id = removal.runner_id;
      enqueue(self, request_priority::cleanup, std::move(call),
              [rp, id = removal.runner_id](
                caf::expected<github_response> res) mutable {
                // A registration that is already gone is what we wanted.
                if (res || res.error() == errc::not_found)
                  rp.deliver(id);
                else
                  rp.deliver(res.error());
              });
      pump(self);
      return rp;
    },
    [self](atom::admit, const registration_admission& req) {
      return admit(self, req);
    },
    [self](atom::release, uint64_t ticket) {
      self->state.admissions.erase(ticket);
      pump(self);
    },
    [self](atom::drain) {
      drain(self);
      return true;
    },
    [self](atom::budget) { return budget_of(self); },
    [self](atom::flush) {
      auto& st = self->state;
      if (st.flush_at && *st.flush_at <= now(self))
        st.flush_at.reset();
      pump(self);
    },
  };
}

} // namespace ghscale
