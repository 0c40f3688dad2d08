#include "protobalance/net/connect.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>

namespace pb::net {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

boost::system::error_code last_error() {
  return {errno, boost::system::system_category()};
}

}  // namespace

// A non-blocking connect() and a wait for writability, instead of Asio's async_connect raced
// against a timer with `||`: no timer, parallel group or extra coroutines per connect, and no
// poll() before the result is read (measured in BENCHMARKS.md).
Task<boost::system::error_code> connect_with_timeout(Worker& worker, Socket& socket,
                                                     const tcp::endpoint& endpoint,
                                                     std::chrono::milliseconds timeout) {
  const int fd = ::socket(endpoint.protocol().family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                          endpoint.protocol().protocol());
  if (fd < 0) co_return last_error();
  boost::system::error_code ec;
  socket.adopt(endpoint.protocol(), fd, ec);
  if (ec) {
    ::close(fd);
    co_return ec;
  }
  if (::connect(fd, endpoint.data(), static_cast<socklen_t>(endpoint.size())) == 0) co_return ec;
  if (errno != EINPROGRESS) co_return last_error();
  // A node on the same host has usually completed the handshake within connect() itself. A
  // send() of nothing says so (0), or reports the connect's error, or says EAGAIN while it is
  // still in progress; the wait for writability and getsockopt() are then only for that case.
  if (::send(fd, nullptr, 0, MSG_DONTWAIT | MSG_NOSIGNAL) == 0) co_return ec;
  if (errno != EAGAIN && errno != EWOULDBLOCK) co_return last_error();

  PendingConnect pending;
  pending.socket = &socket;
  worker.watch_connect(pending, timeout);
  auto [wait_ec] = co_await socket.async_wait(Socket::wait_write, asio::as_tuple(use_task));
  if (pending.expired) co_return asio::error::timed_out;
  if (wait_ec) co_return wait_ec;
  int error = 0;
  socklen_t length = sizeof error;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) co_return last_error();
  co_return boost::system::error_code(error, boost::system::system_category());
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
