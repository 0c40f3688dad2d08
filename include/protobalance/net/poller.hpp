#pragma once

#include <sys/epoll.h>

#include <cstdint>

namespace pb::net {

// What a worker's Poller knows of one registered socket: whether it may have bytes (or an end
// of stream) to read, whether it may take bytes, and whether the peer's FIN has arrived. Kept up
// to date by every event. Lives in the object that owns the socket (a Connection, a Listener),
// which keeps it alive until after the poller's current batch (see Worker::retire).
struct PollSlot {
  // Who is told about events: a plain function and its argument, not a virtual call --
  // UndefinedBehaviorSanitizer checks the dynamic type of a new caller/type pair with a pipe(),
  // which fails when the process is out of descriptors, exactly when these events matter most.
  // Null: events are only recorded.
  using Notify = void (*)(void* context, PollSlot& slot);
  Notify notify = nullptr;
  void* context = nullptr;
  bool registered = false;
  bool readable = false;     // not known to be drained
  bool writable = true;      // not known to be full
  bool peer_closed = false;  // EPOLLRDHUP seen: the peer's FIN is queued behind any bytes
  bool failed = false;       // EPOLLERR seen: the next read or write reports an error

  // Starts a new socket: nothing known yet.
  void reset() { *this = PollSlot{}; }
  void attach(Notify function, void* argument) {
    notify = function;
    context = argument;
  }
  void detach() { attach(nullptr, nullptr); }
};

// A worker's own edge-triggered epoll set for relayed and listening sockets, each registered
// once with EPOLLIN | EPOLLOUT | EPOLLRDHUP: waiting for readiness costs no system call at all,
// where Asio's reactor re-arms a descriptor with epoll_ctl(MOD) for every wait it queues without
// trying the operation first -- two per request and three per connection (BENCHMARKS.md).
// EPOLLRDHUP is what makes that sound: after a short read, a socket is drained unless its FIN
// has arrived, which the event says.
//
// The set is the worker's only one: its loop (Worker) blocks in wait(), one epoll_wait per
// wake-up, then deliver()s the batch: a slot's notify function is called for each event. A slot
// must stay alive until its batch is delivered, and a target must not free a slot from within
// its notify call (the rest of the batch may name it): owners defer freeing until after the
// batch (Worker::retire). Closing a descriptor removes it from the set.
class Poller {
 public:
  // Events taken by one wait() at most.
  static constexpr int kBatch = 64;

  Poller();  // throws boost::system::system_error if no epoll set can be created
  ~Poller();
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;

  // Adds `fd` with `slot` as its event target; false (errno set) if epoll_ctl failed.
  bool add(int fd, PollSlot& slot);
  // Waits up to `timeout_ms` (-1: no limit, 0: not at all) for events and keeps them; returns
  // how many (kBatch: more may be ready at once). Interrupted by a signal: 0.
  int wait(int timeout_ms);
  // Delivers the events the last wait() kept (once).
  void deliver();

 private:
  int fd_ = -1;
  int ready_ = 0;  // events kept by the last wait(), not delivered yet
  epoll_event events_[kBatch];
};

}  // namespace pb::net
