#pragma once

#include <cstdint>

#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/asio/io_context.hpp>

namespace pb::net {

// What a worker's Poller knows of one relayed socket: whether it may have bytes (or an end of
// stream) to read, whether it may take bytes, and whether the peer's FIN has arrived. Kept up to
// date by every event, also while no relay is attached (between a failed node and the next, the
// client socket stays registered). Lives in the session (SessionEntry), which outlives the
// socket's registration: the socket is closed before the session's frame goes.
struct PollSlot {
  // Who is told about events (a relay, a connect in progress, a listener): a plain function and
  // its argument, not a virtual call -- UndefinedBehaviorSanitizer checks the dynamic type of a
  // new caller/type pair with a pipe(), which fails when the process is out of descriptors,
  // exactly when these events matter most. Null: events are only recorded.
  using Notify = void (*)(void* context, PollSlot& slot);
  Notify notify = nullptr;
  void* context = nullptr;
  bool registered = false;
  bool readable = false;  // not known to be drained
  bool writable = true;   // not known to be full
  bool peer_closed = false;  // EPOLLRDHUP seen: a short read does not mean drained

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
// has arrived, which the event says; Asio's registration has no EPOLLRDHUP.
//
// The set's own descriptor sits in the worker's Asio reactor as one descriptor with one queued
// operation that never asks for a re-arm: it completes when the set has events, the poller
// drains the set with epoll_wait(0) and queues the operation again. (Uses Asio's reactor
// operation interface, a detail API of Boost 1.81, the version this project builds with.)
//
// Targets never complete (nor free their slots' sessions) while a batch is being dispatched:
// they post their completions, so an event later in the same batch never reaches freed memory.
class Poller {
 public:
  explicit Poller(boost::asio::io_context& context);
  ~Poller();
  Poller(const Poller&) = delete;
  Poller& operator=(const Poller&) = delete;

  // Adds `fd` with `slot` as its event target; false (errno set) if epoll_ctl failed.
  bool add(int fd, PollSlot& slot);
  // Starts waiting for events (once, when the worker starts).
  void start();

 private:
  struct Wait : boost::asio::detail::reactor_op {
    explicit Wait(Poller& p);
    static status perform(reactor_op* base);
    static void complete(void* owner, boost::asio::detail::scheduler_operation* base,
                         const boost::system::error_code& ec, std::size_t bytes);
    Poller* poller;
    bool queued = false;  // perform() is being called for the queueing, not for an event
  };

  void arm();
  void drain();

  boost::asio::detail::reactor& reactor_;
  boost::asio::detail::reactor::per_descriptor_data reactor_data_ = nullptr;
  Wait* wait_;  // heap: it may outlive the poller in Asio's queues (see ~Poller)
  int fd_ = -1;
  bool started_ = false;
};

}  // namespace pb::net
