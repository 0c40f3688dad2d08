#include "protobalance/net/poller.hpp"

#include <unistd.h>

#include <cerrno>

#include <boost/system/system_error.hpp>

namespace pb::net {

namespace {

// Records what an event says about a socket. Errors and hang-ups count as readable, writable
// and closed: the next read or write reports them.
void note(PollSlot& slot, std::uint32_t events) {
  if ((events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) slot.readable = true;
  if ((events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) != 0) slot.writable = true;
  if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0) slot.peer_closed = true;
  if ((events & EPOLLERR) != 0) slot.failed = true;
}

}  // namespace

Poller::Poller() : fd_(::epoll_create1(EPOLL_CLOEXEC)) {
  if (fd_ < 0) {
    throw boost::system::system_error(errno, boost::system::system_category(), "epoll_create1");
  }
}

Poller::~Poller() {
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

int Poller::wait(int timeout_ms) {
  const int n = ::epoll_wait(fd_, events_, kBatch, timeout_ms);
  ready_ = n < 0 ? 0 : n;  // EINTR: the caller's loop comes back
  return ready_;
}

void Poller::deliver() {
  const int n = ready_;
  ready_ = 0;
  for (int i = 0; i < n; ++i) {
    auto& slot = *static_cast<PollSlot*>(events_[i].data.ptr);
    note(slot, events_[i].events);
    if (slot.notify != nullptr) slot.notify(slot.context, slot);
  }
}

}  // namespace pb::net
