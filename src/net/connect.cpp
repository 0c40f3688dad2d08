#include "protobalance/net/connect.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <boost/asio/append.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>

#include "protobalance/net/proxy_protocol.hpp"

namespace pb::net {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

boost::system::error_code last_error() {
  return {errno, boost::system::system_category()};
}

// A connect still in progress: waits on the worker's poller until the socket is writable or its
// deadline passes (the worker's shared deadline timer), then completes (posted, never from
// within the poller's batch or the timer's handler) with the outcome.
template <typename Handler>
class ConnectWait {
 public:
  ConnectWait(Handler handler, Worker& worker, PollSlot& slot)
      : handler_(std::move(handler)), worker_(worker), slot_(slot) {}

  void begin(std::chrono::milliseconds timeout) {
    slot_.attach(&ConnectWait::on_poll, this);
    worker_.arm(deadline_, timeout);
  }

 private:
  static void on_poll(void* self, PollSlot& slot) {
    if (slot.writable) static_cast<ConnectWait*>(self)->finish({});
  }
  static void on_deadline(void* self, bool abandoned) {
    auto* wait = static_cast<ConnectWait*>(self);
    if (abandoned) {  // the worker is being destroyed: destroy without completing
      wait->slot_.detach();
      Handler handler = std::move(wait->handler_);  // destroyed after this object: it owns the caller
      delete wait;
      return;
    }
    wait->finish(asio::error::timed_out);
  }
  void finish(boost::system::error_code ec) {
    deadline_.disarm();
    slot_.detach();
    Handler handler = std::move(handler_);
    auto executor = asio::get_associated_executor(handler, worker_.context().get_executor());
    delete this;
    asio::post(executor, asio::append(std::move(handler), ec));
  }

  Handler handler_;
  Worker& worker_;
  PollSlot& slot_;
  Deadline deadline_{&ConnectWait::on_deadline, this};
};

template <typename CompletionToken>
auto async_wait_connected(Worker& worker, PollSlot& slot, std::chrono::milliseconds timeout,
                          CompletionToken&& token) {
  return asio::async_initiate<CompletionToken, void(boost::system::error_code)>(
      [&worker, &slot, timeout](auto handler) {
        using Op = ConnectWait<std::decay_t<decltype(handler)>>;
        (new Op(std::move(handler), worker, slot))->begin(timeout);
      },
      token);
}

}  // namespace

// A non-blocking connect() on a socket of the worker's poller: no timer, parallel group or
// extra coroutine per connect (measured in BENCHMARKS.md).
Task<boost::system::error_code> connect_with_timeout(Worker& worker, Fd& socket, PollSlot& slot,
                                                     const tcp::endpoint& endpoint,
                                                     std::chrono::milliseconds timeout) {
  slot.reset();
  const int fd = ::socket(endpoint.protocol().family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                          endpoint.protocol().protocol());
  if (fd < 0) co_return last_error();
  socket = Fd(fd);
  if (::connect(fd, endpoint.data(), static_cast<socklen_t>(endpoint.size())) == 0) co_return boost::system::error_code{};
  if (errno != EINPROGRESS) co_return last_error();
  // A node on the same host has usually completed the handshake within connect() itself. A
  // send() of nothing says so (0), or reports the connect's error, or says EAGAIN while it is
  // still in progress; only then is the socket registered and waited for.
  if (::send(fd, nullptr, 0, MSG_DONTWAIT | MSG_NOSIGNAL) == 0) co_return boost::system::error_code{};
  if (errno != EAGAIN && errno != EWOULDBLOCK) co_return last_error();

  slot.writable = false;  // the registration reports EPOLLOUT once connected (or failed)
  if (!worker.poller().add(fd, slot)) co_return last_error();
  const auto [wait_ec] =
      co_await async_wait_connected(worker, slot, timeout, asio::as_tuple(use_task));
  if (wait_ec) co_return wait_ec;
  int error = 0;
  socklen_t length = sizeof error;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) co_return last_error();
  co_return boost::system::error_code(error, boost::system::system_category());
}

std::string_view local_header(config::ProxyProtocol version) { return proxy::local_header(version); }

bool send_local_header(const Fd& socket, config::ProxyProtocol version) {
  const std::string_view header = local_header(version);
  if (header.empty()) return true;
  const ssize_t n = ::send(socket.native_handle(), header.data(), header.size(),
                           MSG_NOSIGNAL | MSG_DONTWAIT);
  return n == static_cast<ssize_t>(header.size());
}

bool is_local_shortage(const boost::system::error_code& ec) {
  return ec == asio::error::no_descriptors || ec.value() == ENFILE ||
         ec == asio::error::no_buffer_space || ec == asio::error::no_memory;
}

balance::FailureReason classify_connect_error(const boost::system::error_code& ec) {
  namespace err = asio::error;
  if (ec == err::connection_refused) return balance::FailureReason::refused;
  if (ec == err::timed_out) return balance::FailureReason::timeout;
  if (ec == err::connection_reset || ec == err::connection_aborted)
    return balance::FailureReason::reset;
  if (ec == err::eof || ec == err::broken_pipe) return balance::FailureReason::closed;
  return balance::FailureReason::unreachable;
}

}  // namespace pb::net
