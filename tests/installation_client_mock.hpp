#pragma once
// A scripted installation client for actor tests: job statuses by job id
// ("queued" when absent), and every status query and runner removal it got.
// Registrations and runner lists are not scripted (rejected).
#include "messages/actors.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace ghscale::test {

struct installation_script {
  std::map<int64_t, caf::expected<std::string>> statuses;
  std::vector<job_status_query> queries;
  std::vector<runner_removal> removals;
  /// Registrations the budget admits per admission (all when negative), and
  /// when it says the next one could start; every admission asked for.
  int32_t admit_limit = -1;
  caf::timespan next_at{0};
  std::vector<registration_admission> admissions;
  std::vector<uint64_t> released;
};

inline installation_client_actor
spawn_installation_client(caf::actor_system& sys,
                          std::shared_ptr<installation_script> script) {
  return sys.spawn([](std::shared_ptr<installation_script> script)
                     -> installation_client_actor::behavior_type {
    auto unscripted = [] { return caf::make_error(errc::rejected, "not scripted"); };
    return {
      [=](atom::registration,
          const registration_request&) -> caf::result<runner_registration> {
        return unscripted();
      },
      [=](atom::job_status, const job_status_query& q) -> caf::result<std::string> {
        script->queries.push_back(q);
        auto i = script->statuses.find(q.job_id);
        if (i == script->statuses.end())
          return std::string{"queued"};
        if (!i->second)
          return i->second.error();
        return *i->second;
      },
      [=](atom::runners, const repository_ref&) -> caf::result<runner_list> {
        return unscripted();
      },
      [=](atom::unregister, const runner_removal& removal) -> caf::result<int64_t> {
        script->removals.push_back(removal);
        return removal.runner_id;
      },
      [=](atom::admit, const registration_admission& req) {
        script->admissions.push_back(req);
        auto granted = script->admit_limit < 0 ? req.count
                                               : std::min(req.count, script->admit_limit);
        return admitted_registrations{
          granted, static_cast<uint64_t>(script->admissions.size()), script->next_at};
      },
      [=](atom::release, uint64_t ticket) { script->released.push_back(ticket); },
      [](atom::drain) { return true; },
      [](atom::budget) { return budget_status{}; },
      [](atom::flush) {},
    };
  }, std::move(script));
}

} // namespace ghscale::test
