#pragma once
// Sample GitHub requests shared by the REST codec tests and the prism test:
// every field an operation may use is set, so each builder has its input.
#include "messages/types.hpp"

namespace ghscale::testing {

inline const repository_ref org_target{"acme", "", owner_type::organization};
inline const repository_ref repo_target{"acme", "web-app", owner_type::organization};

inline github_request sample_github_request(github_op op, repository_ref target) {
  github_request req;
  req.op = op;
  req.installation_id = 77;
  req.credential = secret_string{"ghs_installation_token"};
  req.target = std::move(target);
  req.runner_name = "ghscale-a1b2";
  req.labels = {"self-hosted", "linux", "x64"};
  req.runner_group = "ci-runners";
  req.job_id = 9001;
  req.runner_id = 42;
  req.page = 3;
  return req;
}

} // namespace ghscale::testing
