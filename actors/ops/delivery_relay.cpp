#include "actors/ops/delivery_relay.hpp"

#include <utility>
#include <vector>

namespace ghscale {

delivery_relay_actor::behavior_type
delivery_relay(delivery_relay_actor::stateful_pointer<delivery_relay_state> self,
               queue_actor queue, caf::timespan enqueue_timeout) {
  self->state.queue = std::move(queue);
  self->state.enqueue_timeout = enqueue_timeout;
  return {
    [self](atom::enqueue, const relayed_delivery_ptr& delivery) {
      self->request(self->state.queue, self->state.enqueue_timeout, atom::enqueue_v,
                    std::vector<outgoing_message>{{std::move(delivery->body), {}}})
        .then(
          [delivery](const batch_result& res) {
            if (!res.failed.empty())
              delivery->done(caf::make_error(errc::backend_failure,
                                             res.failed.front().code + ": "
                                               + res.failed.front().message));
            else if (res.succeeded.empty())
              delivery->done(
                caf::make_error(errc::backend_failure, "queue confirmed nothing"));
            else
              delivery->done(caf::none);
          },
          [delivery](const caf::error& err) { delivery->done(err); });
    },
  };
}

} // namespace ghscale
