// The twin link's subscriber thread: one connection to Redis subscribed to the twins' channel,
// which delivers what the other balancers publish.
#include <poll.h>

#include <algorithm>

#include "twin_link_state.hpp"

namespace pb::state {

using twin_redis::command;
using twin_redis::Context;
using twin_redis::kFirstBackoff;
using twin_redis::kMaxBackoff;
using twin_redis::Reply;
using twin_redis::reply_text;

void TwinLink::State::run_subscriber() {
  auto backoff = kFirstBackoff;
  bool first = true;
  while (true) {
    std::string error;
    Context c = open(error);
    if (c) {
      Reply r = command(c.get(), {"SUBSCRIBE", channel});
      if (!r || r->type != REDIS_REPLY_ARRAY) {
        c.reset();
      }
    }
    if (!c) {
      if (!pause(backoff)) {
        return;
      }
      backoff = std::min(backoff * 2, kMaxBackoff);
      continue;
    }
    backoff = kFirstBackoff;
    if (!first) {
      // Messages published while we were not subscribed are found by a re-read.
      resync_requested = true;
      wake.notify_all();
    }
    first = false;
    set_subscribed(true);
    const bool failed = listen(c.get());
    set_subscribed(false);
    if (!failed) {
      return;
    }
  }
}

// Delivers messages until the connection fails (returns true) or the link stops (false).
bool TwinLink::State::listen(redisContext* c) {
  while (true) {
    pollfd fds[2] = {{c->fd, POLLIN, 0}, {wake_pipe[0], POLLIN, 0}};
    const int n = ::poll(fds, 2, 1000);
    {
      std::lock_guard lock(mutex);
      if (stopping) {
        return false;
      }
    }
    if (n <= 0 || (fds[0].revents == 0)) {
      continue;
    }
    if (redisBufferRead(c) != REDIS_OK) {
      return true;
    }
    void* raw = nullptr;
    while (redisGetReplyFromReader(c, &raw) == REDIS_OK && raw != nullptr) {
      Reply r(static_cast<redisReply*>(raw));
      raw = nullptr;
      if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
          reply_text(r->element[0]) == "message") {
        on_published(reply_text(r->element[2]));
      }
    }
    if (c->err != 0) {
      return true;
    }
  }
}

void TwinLink::State::on_published(const std::string& text) {
  if (text.starts_with(own_prefix)) {
    return;  // ours, seen again through the subscription
  }
  const std::optional<TwinMessage> m = parse_twin_message(text);
  if (!m || m->instance == config.instance) {
    return;
  }
  {
    std::lock_guard lock(mutex);
    ++stats.messages_received;
  }
  deliver(*m);
}

void TwinLink::State::deliver(const TwinMessage& m) {
  if (m.instance == config.instance) {
    return;
  }
  {
    std::lock_guard lock(mutex);
    instances[m.instance] = std::chrono::system_clock::now();
  }
  if (callbacks.on_message) {
    callbacks.on_message(m);
  }
}

}  // namespace pb::state
