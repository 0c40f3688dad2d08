#include "protobalance/net/poller.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>

#include <boost/asio/detail/reactor.hpp>
#include <boost/asio/detail/reactor_op.hpp>
#include <boost/system/system_error.hpp>
#include <boost/version.hpp>

// The nesting below uses Asio's reactor operation interface, which is not public API: it was
// checked against Boost 1.81 only (CMakeLists.txt requires that exact version).
static_assert(BOOST_VERSION / 100 == 1081, "poller.cpp was checked against Boost 1.81's reactor");

namespace pb::net {

namespace asio = boost::asio;
using asio::detail::reactor;
using asio::detail::reactor_op;

namespace {

constexpr int kBatch = 64;

// Records what an event says about a socket. Errors and hang-ups count as readable, writable
// and closed: the next read or write reports them.
void note(PollSlot& slot, std::uint32_t events) {
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) slot.readable = true;
  if ((events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0) slot.writable = true;
  if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) slot.peer_closed = true;
  if ((events & EPOLLERR) != 0) slot.failed = true;
}

}  // namespace

// The set's own descriptor sits in the worker's Asio reactor as one descriptor with one queued
// operation that never asks for a re-arm: it completes when the set has events, the poller
// drains the set with epoll_wait(0) and queues the operation again.
struct Poller::Nest {
  struct Wait : reactor_op {
    explicit Wait(Nest& n)
        : reactor_op(boost::system::error_code(), &Wait::perform, &Wait::complete), nest(&n) {}
    // Called by the reactor to try the operation: when it is being queued (never ready then,
    // so Asio queues it without a system call) and on every event for the set (ready).
    static status perform(reactor_op* base) {
      return static_cast<Wait*>(base)->queued ? not_done : done;
    }
    static void complete(void* owner, asio::detail::scheduler_operation* base,
                         const boost::system::error_code& ec, std::size_t) {
      auto* self = static_cast<Wait*>(base);
      if (self->nest == nullptr || owner == nullptr) {  // the poller or the io_context is gone
        if (self->nest != nullptr) self->nest->wait = nullptr;
        delete self;
        return;
      }
      if (ec) return;  // cancelled: the poller is being destroyed
      self->nest->drain();
    }
    Nest* nest;
    bool queued = false;  // perform() is being called for the queueing, not for an event
  };

  explicit Nest(asio::io_context& context)
      : reactor_(asio::use_service<reactor>(context)), wait(new Wait(*this)) {
    fd = ::epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0) {
      delete wait;
      throw boost::system::system_error(errno, boost::system::system_category(), "epoll_create1");
    }
    if (const int error = reactor_.register_descriptor(fd, reactor_data_); error != 0) {
      ::close(fd);
      delete wait;
      throw boost::system::system_error(error, boost::system::system_category(),
                                        "registering the worker's poller");
    }
  }

  ~Nest() {
    if (wait != nullptr) {
      if (started) {
        wait->nest = nullptr;  // queued in the reactor or the scheduler: freed from there
      } else {
        delete wait;
      }
    }
    reactor_.deregister_descriptor(fd, reactor_data_, true);
    reactor_.cleanup_descriptor_data(reactor_data_);
    ::close(fd);
  }

  void arm() {
    wait->queued = true;
    reactor_.start_op(reactor::read_op, fd, reactor_data_, wait, true, true);
    wait->queued = false;
  }

  // Takes every event the set has. Sound for an edge-triggered nesting: once epoll_wait returns
  // fewer events than asked for, the set is empty, and any later event raises a new edge on the
  // set's descriptor, which the re-queued operation then sees.
  void drain() {
    epoll_event events[kBatch];
    for (;;) {
      const int n = ::epoll_wait(fd, events, kBatch, 0);
      if (n < 0 && errno == EINTR) continue;
      for (int i = 0; i < n; ++i) {
        auto& slot = *static_cast<PollSlot*>(events[i].data.ptr);
        note(slot, events[i].events);
        if (slot.notify != nullptr) slot.notify(slot.context, slot);
      }
      if (n < kBatch) break;
    }
    arm();
  }

  reactor& reactor_;
  reactor::per_descriptor_data reactor_data_ = nullptr;
  Wait* wait;  // heap: it may outlive the poller in Asio's queues (see ~Nest)
  int fd = -1;
  bool started = false;
};

Poller::Poller(asio::io_context& context) : nest_(std::make_unique<Nest>(context)) {}

Poller::~Poller() = default;

bool Poller::add(int fd, PollSlot& slot) {
  epoll_event event{};
  event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  event.data.ptr = &slot;
  if (::epoll_ctl(nest_->fd, EPOLL_CTL_ADD, fd, &event) != 0) return false;
  slot.registered = true;
  return true;
}

void Poller::start() {
  nest_->started = true;
  // The first wait completes at once (its perform() says done): the set is drained on the
  // io_context's thread, so events of descriptors added before start() -- whose edge on the
  // set's descriptor has passed already -- are not lost.
  nest_->arm();
}

}  // namespace pb::net
