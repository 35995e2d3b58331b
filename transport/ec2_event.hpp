#pragma once
// EC2's events as EventBridge puts them on an SQS queue. Pure functions, no
// actors, no sockets.
//
// The one ghscale reads is the "EC2 Spot Instance Interruption Warning": EC2
// sends it two minutes before it reclaims a spot instance, so the runner on
// it can be deregistered and its job given a replacement in time.
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include <optional>
#include <string>

namespace ghscale {

/// The instance a spot interruption warning names; nullopt for a body that
/// is no such event (so the caller can try it as a workflow_job). A body that
/// is one but is broken is an `errc::malformed_event` saying what and where
/// (a JSON path), never quoting the body.
caf::expected<std::optional<std::string>>
parse_spot_interruption(const std::string& body);

/// The warning for `instance_id` as EventBridge delivers it, sent at `at`
/// (time since the Unix epoch): what the simulated cloud puts on the queue.
std::string to_spot_interruption_event(const std::string& instance_id,
                                       caf::timespan at);

} // namespace ghscale
