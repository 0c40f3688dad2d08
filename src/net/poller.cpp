#include "protobalance/net/poller.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <cerrno>

#include <boost/system/system_error.hpp>


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
}

}  // namespace

Poller::Wait::Wait(Poller& p)
    : reactor_op(boost::system::error_code(), &Wait::perform, &Wait::complete), poller(&p) {}

// Called by the reactor to try the operation: when it is being queued (never ready then, so
// Asio queues it without a system call) and on every event for the set (ready).
reactor_op::status Poller::Wait::perform(reactor_op* base) {
  return static_cast<Wait*>(base)->queued ? not_done : done;
}

void Poller::Wait::complete(void* owner, asio::detail::scheduler_operation* base,
                            const boost::system::error_code& ec, std::size_t) {
  auto* self = static_cast<Wait*>(base);
  if (self->poller == nullptr || owner == nullptr) {  // the poller or the io_context is gone
    if (self->poller != nullptr) self->poller->wait_ = nullptr;
    delete self;
    return;
  }
  if (ec) return;  // cancelled: the poller is being destroyed
  self->poller->drain();
}

Poller::Poller(asio::io_context& context)
    : reactor_(asio::use_service<reactor>(context)), wait_(new Wait(*this)) {
  fd_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (fd_ < 0) {
    delete wait_;
    throw boost::system::system_error(errno, boost::system::system_category(), "epoll_create1");
  }
  if (const int error = reactor_.register_descriptor(fd_, reactor_data_); error != 0) {
    ::close(fd_);
    delete wait_;
    throw boost::system::system_error(error, boost::system::system_category(),
                                      "registering the relay poller");
  }
}

Poller::~Poller() {
  if (wait_ != nullptr) {
    if (started_) {
      wait_->poller = nullptr;  // queued in the reactor or the scheduler: freed from there
    } else {
      delete wait_;
    }
  }
  reactor_.deregister_descriptor(fd_, reactor_data_, true);
  reactor_.cleanup_descriptor_data(reactor_data_);
  ::close(fd_);
}

bool Poller::add(int fd, PollSlot& slot) {
  epoll_event event{};
  event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
  event.data.ptr = &slot;
  if (::epoll_ctl(fd_, EPOLL_CTL_ADD, fd, &event) != 0) return false;
  slot.registered = true;
  return true;
}

void Poller::start() {
  started_ = true;
  arm();
}

void Poller::arm() {
  wait_->queued = true;
  reactor_.start_op(reactor::read_op, fd_, reactor_data_, wait_, true, true);
  wait_->queued = false;
}

// Takes every event the set has. Sound for an edge-triggered nesting: once epoll_wait returns
// fewer events than asked for, the set is empty, and any later event raises a new edge on the
// set's descriptor, which the re-queued operation then sees.
void Poller::drain() {
  epoll_event events[kBatch];
  for (;;) {
    const int n = ::epoll_wait(fd_, events, kBatch, 0);
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

}  // namespace pb::net
