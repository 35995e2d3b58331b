#include "actors/clients/http_client.hpp"

#include <utility>

namespace ghscale {

namespace {

/// Reports a finished transfer to its actor, if the actor still exists. The
/// engine holds only a weak reference: it must not keep its owner alive. When
/// the reference taken here turns out to be the last one, the actor ends on
/// the engine thread, which the engine's destructor allows for.
http_engine::completion report_to(caf::weak_actor_ptr owner) {
  return [owner](uint64_t id, caf::expected<http_response> result) {
    auto strong = owner.lock();
    if (!strong)
      return;
    auto handle = caf::actor_cast<http_engine_actor>(std::move(strong));
    if (result)
      caf::anon_send(handle, atom::http_done_v, id, std::move(*result));
    else
      caf::anon_send(handle, atom::http_done_v, id, std::move(result.error()));
  };
}

template <class Result>
void answer(http_engine_actor::stateful_pointer<http_client_state> self,
            uint64_t id, Result&& result) {
  auto i = self->state.open.find(id);
  if (i == self->state.open.end())
    return;
  i->second.deliver(std::forward<Result>(result));
  self->state.open.erase(i);
}

} // namespace

http_client_state::~http_client_state() {
  // Joins the engine thread; its final reports find this actor gone.
  engine.reset();
  for (auto& [id, promise] : open)
    promise.deliver(caf::make_error(errc::shutting_down,
                                    "HTTP client stopped with the request open"));
}

http_engine_actor::behavior_type
http_client(http_engine_actor::stateful_pointer<http_client_state> self,
            http_engine_options opts) {
  self->state.engine = std::make_unique<http_engine>(
    std::move(opts), report_to(caf::actor_cast<caf::weak_actor_ptr>(self)));
  return {
    [=](atom::http, http_request& req) -> caf::result<http_response> {
      auto id = self->state.next_id++;
      auto promise = self->make_response_promise<http_response>();
      self->state.open.emplace(id, promise);
      self->state.engine->submit(id, std::move(req));
      return promise;
    },
    [=](atom::http_done, uint64_t id, http_response& response) {
      answer(self, id, std::move(response));
    },
    [=](atom::http_done, uint64_t id, caf::error& err) {
      answer(self, id, std::move(err));
    },
  };
}

} // namespace ghscale
