#include "protobalance/net/listener.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <boost/asio/ip/v6_only.hpp>
#include <boost/system/system_error.hpp>
#include <spdlog/spdlog.h>

#include "protobalance/net/connect.hpp"
#include "protobalance/net/connection.hpp"

namespace pb::net {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

// How long an acceptor rests when the process is out of descriptors: long enough not to spin,
// short enough that accepting resumes soon after connections close.
constexpr auto kAcceptPause = std::chrono::milliseconds(100);
// Connections accepted in one go before the worker's other work gets a turn.
constexpr int kAcceptBatch = 64;

}  // namespace

Acceptor open_acceptor(asio::io_context& context, const tcp::endpoint& endpoint) {
  Acceptor acceptor(context);
  acceptor.open(endpoint.protocol());
  acceptor.set_option(tcp::acceptor::reuse_address(true));
  int one = 1;
  if (::setsockopt(acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    throw boost::system::system_error(errno, boost::system::system_category(), "SO_REUSEPORT");
  }
  if (endpoint.address().is_v6()) acceptor.set_option(asio::ip::v6_only(true));
  acceptor.bind(endpoint);
  acceptor.listen(4096);
  return acceptor;
}

Listener::Listener(Worker& worker, Acceptor acceptor, std::shared_ptr<const Route> route,
                   AcceptStats& stats)
    : worker_(worker), route_(std::move(route)), stats_(stats) {
  fd_ = acceptor.release();
  ::fcntl(fd_, F_SETFL, ::fcntl(fd_, F_GETFL) | O_NONBLOCK);
}

Listener::~Listener() {
  if (fd_ >= 0) ::close(fd_);
}

void Listener::start() {
  if (fd_ < 0) return;
  if (!worker_.poller().add(fd_, slot_)) {
    spdlog::error("{}: cannot watch the listening socket: {}", route_->listener,
                  std::strerror(errno));
    return;
  }
  slot_.attach(&Listener::on_poll, this);
  slot_.readable = true;  // connections may be waiting already
  accept_some();
}

void Listener::close() {
  if (fd_ < 0) return;
  ::close(fd_);  // leaves the poller's set
  fd_ = -1;
  slot_.detach();
  continuation_.unlink();
  pause_.disarm();
  paused_ = false;
}

void Listener::on_poll(void* listener, PollSlot& slot) {
  auto& self = *static_cast<Listener*>(listener);
  if (slot.readable && !self.paused_ && !self.continuation_.is_linked()) self.accept_some();
}

void Listener::on_continue(void* listener) {
  auto& self = *static_cast<Listener*>(listener);
  if (self.fd_ >= 0 && !self.paused_) self.accept_some();
}

void Listener::on_pause_over(void* listener, bool abandoned) {
  if (abandoned) return;  // the worker is going away
  auto& self = *static_cast<Listener*>(listener);
  self.paused_ = false;
  if (self.fd_ >= 0) self.accept_some();  // the waiting connections raise no new event
}

void Listener::accept_some() {
  for (int i = 0; i < kAcceptBatch && fd_ >= 0; ++i) {
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    // The peer's address comes from accept4() itself, and the socket is non-blocking at once.
    const int fd = ::accept4(fd_, reinterpret_cast<sockaddr*>(&address), &length,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
      tcp::endpoint peer;
      std::memcpy(peer.data(), &address, std::min<std::size_t>(length, sizeof address));
      peer.resize(length);
      worker_.adopt(std::make_unique<Connection>(worker_, route_, Fd(fd), peer)).start();
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      slot_.readable = false;  // the next connection raises a new event
      return;
    }
    if (is_local_shortage({errno, boost::system::system_category()})) {
      pause(errno);
      return;
    }
    // ECONNABORTED and friends: the client gave up before we accepted; nothing to do.
    spdlog::debug("{}: accept: {}", route_->listener, std::strerror(errno));
  }
  if (fd_ < 0) return;
  // Connections may be left: the edge that announced them will not come again, so go on after
  // the worker's other work.
  worker_.defer(continuation_);
}

// Out of descriptors: retrying at once would spin on the same error. Existing connections keep
// flowing; accepting resumes when some close.
void Listener::pause(int error) {
  stats_.pauses.fetch_add(1, std::memory_order_relaxed);
  if (!warned_descriptors_) {
    spdlog::warn("{}: accept failed ({}); pausing accepts for {} ms at a time", route_->listener,
                 std::strerror(error), kAcceptPause.count());
    warned_descriptors_ = true;
  }
  paused_ = true;
  worker_.arm(pause_, kAcceptPause);
}

}  // namespace pb::net
