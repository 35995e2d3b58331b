#include "actors/reaper.hpp"

#include "actors/clock.hpp"
#include "actors/ops/log.hpp"
#include "transport/idle_schedule.hpp"

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <set>
#include <utility>

namespace ghscale {

namespace {

using reaper_ptr = reaper_actor::stateful_pointer<reaper_state>;

/// GitHub requests one reaper keeps in flight: deletions and listings are an
/// installation client's lowest priority, and a pass that retires hundreds
/// of runners must not flood its queue ahead of the next pass's work.
constexpr int32_t max_github_in_flight = 24;

// -- counting ------------------------------------------------------------------

reap_pass& current_pass(reaper_ptr self) {
  return *self->state.pass;
}

void count_action(reaper_ptr self, const char* action, int32_t& counter) {
  ++counter;
  self->state.stats->add("ghscale_reaper_actions_total",
                         {{"pool", self->state.pool.name}, {"action", action}});
}

void count_call(reaper_ptr self) {
  ++current_pass(self).report.api_calls;
}

/// A call that failed: counted, logged, and left for the next pass.
void count_failure(reaper_ptr self, const std::string& what, log::field subject,
                   const caf::error& err) {
  ++current_pass(self).report.errors;
  self->state.stats->add("ghscale_reaper_errors_total",
                         {{"pool", self->state.pool.name}});
  log::warn(what, {{"pool", self->state.pool.name}, std::move(subject),
                   {"error", describe(err)}});
}

// -- GitHub calls, a bounded number at a time ---------------------------------------

void start_github_backlog(reaper_ptr self) {
  auto& st = self->state;
  while (st.github_in_flight < max_github_in_flight && !st.github_backlog.empty()) {
    auto call = std::move(st.github_backlog.front());
    st.github_backlog.pop_front();
    ++st.github_in_flight;
    call();
  }
}

void github_answered(reaper_ptr self) {
  --self->state.github_in_flight;
  start_github_backlog(self);
}

/// Sends `xs` to the client of `installation_id` once a GitHub slot is free
/// and hands the answer (or why there is none) to `done`.
template <class Answer, class... Ts>
void ask_installation(reaper_ptr self, int64_t installation_id,
                      std::function<void(caf::expected<Answer>)> done, Ts... xs) {
  auto call = [self, installation_id, done, xs...] {
    auto& st = self->state;
    self->request(st.app, st.timeouts.github_call, atom::client_v, installation_id)
      .then(
        [self, done, xs...](installation_client_actor& client) {
          count_call(self);
          self->request(client, self->state.timeouts.github_call, xs...)
            .then(
              [self, done](Answer& answer) {
                github_answered(self);
                done(std::move(answer));
              },
              [self, done](caf::error& err) {
                github_answered(self);
                done(std::move(err));
              });
        },
        [self, done](caf::error& err) {
          github_answered(self);
          done(std::move(err));
        });
  };
  self->state.github_backlog.emplace_back(std::move(call));
  start_github_backlog(self);
}

/// GitHub answers 422 to deleting a runner that is running a job.
bool still_running_job(const caf::error& err) {
  return err == errc::runner_busy;
}

/// The registration is gone: deleted now, or already before.
bool deregistered(const caf::expected<int64_t>& answer) {
  return answer || answer.error() == errc::not_found;
}

// -- where registrations live ----------------------------------------------------------

/// The target an instance's tags name, if they name one completely.
std::optional<registration_target> target_of(const instance_info& instance) {
  auto owner = find_tag(instance.tags, tag_key::owner);
  auto type = find_tag(instance.tags, tag_key::owner_type);
  auto installation = find_tag(instance.tags, tag_key::installation);
  if (!owner || !type || !installation || owner->empty())
    return std::nullopt;
  registration_target out;
  auto slash = owner->find('/');
  out.target.owner = owner->substr(0, slash);
  if (slash != std::string::npos)
    out.target.repo = owner->substr(slash + 1);
  if (*type == to_string(owner_type::organization))
    out.target.type = owner_type::organization;
  else if (*type == to_string(owner_type::user))
    out.target.type = owner_type::user;
  else
    return std::nullopt;
  auto first = installation->data();
  auto last = first + installation->size();
  auto [end, ec] = std::from_chars(first, last, out.installation_id);
  if (ec != std::errc{} || end != last || out.installation_id <= 0)
    return std::nullopt;
  return out;
}

void add_distinct(std::vector<registration_target>& xs, registration_target x) {
  if (std::find(xs.begin(), xs.end(), x) == xs.end())
    xs.push_back(std::move(x));
}

std::vector<registration_target> targets_to_list(reaper_ptr self) {
  std::vector<registration_target> out;
  for (auto& instance : current_pass(self).inventory.instances)
    if (auto found = target_of(instance))
      add_distinct(out, std::move(*found));
  for (auto& known : self->state.known_targets)
    add_distinct(out, known);
  return out;
}

void remember_targets(reaper_ptr self, const pool_view& view) {
  auto& known = self->state.known_targets;
  known.clear();
  for (auto& runner : view.runners)
    if (!runner.target.owner.empty() && runner.installation_id != 0)
      add_distinct(known, {runner.target, runner.installation_id});
}

// -- the pass ------------------------------------------------------------------------------

void finish_pass(reaper_ptr self) {
  auto& st = self->state;
  auto pass = std::move(*st.pass);
  st.pass.reset();
  auto& report = pass.report;
  label_set pool_label{{"pool", st.pool.name}};
  st.stats->add("ghscale_reaper_passes_total", pool_label);
  st.stats->add("ghscale_reaper_api_calls_total", pool_label, report.api_calls);
  st.stats->set("ghscale_reaper_last_pass_api_calls", pool_label,
                static_cast<double>(report.api_calls));
  log::info("reap pass done",
            {{"pool", st.pool.name}, {"idle_retired", report.idle_retired},
             {"kept_busy", report.kept_busy},
             {"orphans_tagged", report.orphans_tagged},
             {"orphans_terminated", report.orphans_terminated},
             {"ghosts_deleted", report.ghosts_deleted},
             {"bypassed", report.bypassed}, {"api_calls", report.api_calls},
             {"errors", report.errors}});
  for (auto& waiter : pass.waiters)
    waiter.deliver(report);
}

void settle_terminations(reaper_ptr self, const batch_result& result) {
  auto& st = self->state;
  auto& report = current_pass(self).report;
  std::set<std::string> terminated(result.succeeded.begin(), result.succeeded.end());
  for (auto& doomed : current_pass(self).doomed) {
    if (terminated.count(doomed.instance_id) == 0)
      continue;
    if (doomed.orphan)
      count_action(self, "orphan_terminated", report.orphans_terminated);
    else
      count_action(self, "idle_retired", report.idle_retired);
    log::info(doomed.orphan ? "reaper terminated orphan instance"
                            : "reaper retired idle runner",
              {{"pool", st.pool.name}, {"runner", doomed.runner_name},
               {"instance", doomed.instance_id}});
  }
  for (auto& failure : result.failed)
    count_failure(self, "reaper could not terminate instance",
                  {"instance", failure.id},
                  caf::make_error(errc::backend_failure,
                                  failure.code + ": " + failure.message));
  if (!result.succeeded.empty())
    self->send(st.ledger, atom::terminate_v, instance_ids{result.succeeded});
}

/// One TerminateInstances for every instance the pass retires.
void terminate_doomed(reaper_ptr self) {
  auto& st = self->state;
  auto& doomed = current_pass(self).doomed;
  if (doomed.empty()) {
    finish_pass(self);
    return;
  }
  instance_ids call;
  for (auto& instance : doomed)
    call.ids.push_back(instance.instance_id);
  count_call(self);
  auto count = static_cast<int64_t>(call.ids.size());
  self->request(st.ec2, st.timeouts.aws_call, atom::terminate_v, std::move(call))
    .then(
      [self](batch_result& result) {
        settle_terminations(self, result);
        finish_pass(self);
      },
      [self, count](caf::error& err) {
        count_failure(self, "reaper TerminateInstances failed",
                      {"instances", count}, err);
        finish_pass(self);
      });
}

/// One decision's calls answered; termination follows the last one.
void action_done(reaper_ptr self) {
  if (--current_pass(self).outstanding == 0)
    terminate_doomed(self);
}

bool launched_before(const runner_view& runner, caf::timespan at,
                     caf::timespan age) {
  return at - runner.launched_at > age;
}

caf::expected<int32_t> idle_minimum_at(const reaper_state& st,
                                       caf::timespan actor_time) {
  return idle_minimum(st.pool.idle_schedule, st.pool.min_idle,
                      st.wall.to_wall(actor_time));
}

/// Deregisters an idle runner; only once GitHub let go of it is its
/// instance terminated (with the pass's others).
void deregister_idle(reaper_ptr self, const runner_view& runner) {
  ++current_pass(self).outstanding;
  doomed_instance doomed{runner.instance_id, runner.runner_name, false};
  auto settle = [self, doomed](caf::expected<int64_t> answer) {
    auto& pass = current_pass(self);
    if (deregistered(answer)) {
      pass.doomed.push_back(doomed);
    } else if (still_running_job(answer.error())) {
      count_action(self, "kept_busy", pass.report.kept_busy);
      log::info("reaper keeps runner that took a job",
                {{"pool", self->state.pool.name}, {"runner", doomed.runner_name},
                 {"instance", doomed.instance_id}});
    } else {
      count_failure(self, "reaper could not deregister idle runner",
                    {"runner", doomed.runner_name}, answer.error());
    }
    action_done(self);
  };
  ask_installation<int64_t>(self, runner.installation_id, std::move(settle),
                            atom::unregister_v,
                            runner_removal{runner.target, runner.runner_id});
}

/// Keeps the newest `minimum` ready runners; retires the older ones that
/// lived their minimum running time.
void retire_idle(reaper_ptr self, const pool_view& view) {
  auto& st = self->state;
  auto asked_at = current_pass(self).inventory.asked_at;
  auto minimum = idle_minimum_at(st, asked_at);
  if (!minimum) {
    count_failure(self, "reaper cannot evaluate the idle schedule",
                  {"schedule_windows", static_cast<int64_t>(st.pool.idle_schedule.size())},
                  minimum.error());
    return;
  }
  std::vector<const runner_view*> ready;
  for (auto& runner : view.runners)
    if (runner.state == runner_state::ready && runner.registered)
      ready.push_back(&runner);
  auto keep = static_cast<size_t>(std::max(*minimum, int32_t{0}));
  if (ready.size() <= keep)
    return;
  std::sort(ready.begin(), ready.end(), [](const runner_view* a, const runner_view* b) {
    return a->launched_at != b->launched_at ? a->launched_at > b->launched_at
                                            : a->instance_id > b->instance_id;
  });
  for (auto i = ready.begin() + static_cast<std::ptrdiff_t>(keep); i != ready.end(); ++i)
    if (!(*i)->bypass_removal
        && launched_before(**i, asked_at, st.pool.minimum_running_time))
      deregister_idle(self, **i);
}

void tag_orphans(reaper_ptr self, std::vector<std::string> ids) {
  auto& st = self->state;
  ++current_pass(self).outstanding;
  count_call(self);
  instance_tags call{std::move(ids), {{tag_key::orphan, "true"}}};
  self->request(st.ec2, st.timeouts.aws_call, atom::add_tags_v, std::move(call))
    .then(
      [self](batch_result& result) {
        for (auto& id : result.succeeded) {
          count_action(self, "orphan_tagged", current_pass(self).report.orphans_tagged);
          log::info("reaper tagged orphan instance",
                    {{"pool", self->state.pool.name}, {"instance", id}});
        }
        for (auto& failure : result.failed)
          count_failure(self, "reaper could not tag orphan instance",
                        {"instance", failure.id},
                        caf::make_error(errc::backend_failure,
                                        failure.code + ": " + failure.message));
        action_done(self);
      },
      [self](caf::error& err) {
        count_failure(self, "reaper CreateTags failed", {"tag", tag_key::orphan}, err);
        action_done(self);
      });
}

bool instance_alive(const pool_inventory& inventory, const std::string& id) {
  return std::any_of(inventory.instances.begin(), inventory.instances.end(),
                     [&](const instance_info& instance) {
                       return instance.instance_id == id
                              && instance.state != instance_state::shutting_down
                              && instance.state != instance_state::terminated;
                     });
}

/// Two phases: an instance without registration past its boot time is
/// tagged; still without one on the next pass, it is terminated.
void reap_orphans(reaper_ptr self, const pool_view& view) {
  auto& pass = current_pass(self);
  // A registration missing from an incomplete listing may only be unlisted.
  if (!pass.inventory.registrations_complete)
    return;
  std::vector<std::string> to_tag;
  for (auto& runner : view.runners) {
    bool orphan = !runner.bypass_removal && !runner.registered
                  && !runner.target.owner.empty() && runner.installation_id != 0
                  && launched_before(runner, pass.inventory.asked_at,
                                     self->state.pool.boot_time)
                  && instance_alive(pass.inventory, runner.instance_id);
    if (!orphan)
      continue;
    if (runner.orphan_tagged)
      pass.doomed.push_back({runner.instance_id, runner.runner_name, true});
    else
      to_tag.push_back(runner.instance_id);
  }
  if (!to_tag.empty())
    tag_orphans(self, std::move(to_tag));
}

void delete_ghosts(reaper_ptr self, const pool_view& view) {
  for (auto& ghost : view.ghosts) {
    ++current_pass(self).outstanding;
    auto settle = [self, ghost](caf::expected<int64_t> answer) {
      if (deregistered(answer)) {
        count_action(self, "ghost_deleted", current_pass(self).report.ghosts_deleted);
        log::info("reaper deleted ghost registration",
                  {{"pool", self->state.pool.name}, {"runner", ghost.runner.name},
                   {"runner_id", ghost.runner.id},
                   {"target", ghost.target.full_name()}});
      } else {
        count_failure(self, "reaper could not delete ghost registration",
                      {"runner", ghost.runner.name}, answer.error());
      }
      action_done(self);
    };
    ask_installation<int64_t>(self, ghost.installation_id, std::move(settle),
                              atom::unregister_v,
                              runner_removal{ghost.target, ghost.runner.id});
  }
}

void act(reaper_ptr self, const pool_view& view) {
  // Held by this function, so no answer ends the step before all are sent.
  current_pass(self).outstanding = 1;
  for (auto& runner : view.runners) {
    if (!runner.bypass_removal)
      continue;
    count_action(self, "bypassed", current_pass(self).report.bypassed);
    log::debug("reaper leaves bypassed instance alone",
               {{"pool", self->state.pool.name}, {"runner", runner.runner_name},
                {"instance", runner.instance_id}});
  }
  retire_idle(self, view);
  reap_orphans(self, view);
  delete_ghosts(self, view);
  action_done(self);
}

void reconcile(reaper_ptr self) {
  auto& st = self->state;
  self->request(st.ledger, st.timeouts.ledger, atom::reconcile_v,
                current_pass(self).inventory)
    .then(
      [self](pool_view& view) {
        remember_targets(self, view);
        act(self, view);
      },
      [self](caf::error& err) {
        count_failure(self, "reaper reconciliation failed",
                      {"instances", static_cast<int64_t>(
                                      current_pass(self).inventory.instances.size())},
                      err);
        finish_pass(self);
      });
}

void listing_done(reaper_ptr self) {
  if (--current_pass(self).outstanding == 0)
    reconcile(self);
}

/// Keeps the registrations of this pool's runners ("<pool>-<instance id>").
void keep_pool_registrations(reaper_ptr self, const registration_target& where,
                             runner_list& found) {
  auto prefix = self->state.pool.name + "-";
  auto& seen = current_pass(self).inventory.registrations;
  for (auto& runner : found.runners)
    if (runner.name.compare(0, prefix.size(), prefix) == 0)
      seen.push_back({std::move(runner), where.target, where.installation_id});
}

void list_registrations(reaper_ptr self) {
  auto targets = targets_to_list(self);
  current_pass(self).outstanding = targets.size();
  if (targets.empty()) {
    reconcile(self);
    return;
  }
  for (auto& where : targets) {
    auto settle = [self, where](caf::expected<runner_list> found) {
      if (found) {
        keep_pool_registrations(self, where, *found);
      } else {
        current_pass(self).inventory.registrations_complete = false;
        count_failure(self, "reaper could not list runners",
                      {"target", where.target.full_name()}, found.error());
      }
      listing_done(self);
    };
    ask_installation<runner_list>(self, where.installation_id, std::move(settle),
                                  atom::runners_v, where.target);
  }
}

void start_pass(reaper_ptr self) {
  auto& st = self->state;
  st.pass.emplace();
  current_pass(self).inventory.asked_at = now(self);
  count_call(self);
  instance_filter filter;
  filter.tags = {{tag_key::pool, st.pool.name}};
  self->request(st.ec2, st.timeouts.aws_call, atom::describe_v, std::move(filter))
    .then(
      [self](instance_list& found) {
        current_pass(self).inventory.instances = std::move(found.instances);
        list_registrations(self);
      },
      [self](caf::error& err) {
        count_failure(self, "reaper DescribeInstances failed",
                      {"tag", tag_key::pool}, err);
        finish_pass(self);
      });
}

} // namespace

reaper_actor::behavior_type
reaper(reaper_actor::stateful_pointer<reaper_state> self, pool_config pool,
       ec2_actor ec2, ledger_reconciler_actor ledger, github_app_actor app,
       timeouts_config timeouts, clock_bridge wall, metrics_ptr stats) {
  auto& st = self->state;
  st.pool = std::move(pool);
  st.ec2 = std::move(ec2);
  st.ledger = std::move(ledger);
  st.app = std::move(app);
  st.timeouts = timeouts;
  st.wall = wall;
  st.stats = std::move(stats);
  self->delayed_send(self, st.pool.reap_interval, atom::tick_v);
  return {
    [self](atom::reap) -> caf::result<reap_report> {
      auto promise = self->make_response_promise<reap_report>();
      // A pass in progress answers everyone who asked during it.
      if (!self->state.pass)
        start_pass(self);
      current_pass(self).waiters.push_back(promise);
      return promise;
    },
    [self](atom::tick) {
      self->delayed_send(self, self->state.pool.reap_interval, atom::tick_v);
      if (!self->state.pass)
        start_pass(self);
    },
  };
}

} // namespace ghscale
