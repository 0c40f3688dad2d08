#pragma once

// The I/O types of the data path. Every socket, acceptor and session coroutine of a worker is
// bound to its io_context's own executor type rather than the type-erased any_io_executor:
// a worker's objects never move to another context, and the concrete type makes each socket,
// pending operation and coroutine frame smaller and each executor copy a pointer copy
// (measured in BENCHMARKS.md).

#include <boost/asio/awaitable.hpp>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/detail/socket_ops.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace pb::net {

using Executor = boost::asio::io_context::executor_type;

// A TCP socket of a worker.
class Socket : public boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor> {
 public:
  using basic_stream_socket::basic_stream_socket;

  // Takes over `fd`, a socket this process has just created with socket() and SOCK_NONBLOCK.
  // Asio's assign() must assume any descriptor may be blocking and shared with another
  // (dup()ed) descriptor, and so pays an ioctl(FIONBIO) before the first wait and an
  // epoll_ctl(DEL) when closing; a fresh non-blocking socket needs neither (BENCHMARKS.md).
  // Uses Asio's socket state (detail API of Boost 1.81, the version this project builds with).
  // On error `fd` is not taken.
  void adopt(const boost::asio::ip::tcp& protocol, int fd, boost::system::error_code& ec) {
    assign(protocol, fd, ec);
    if (ec) return;
    namespace ops = boost::asio::detail::socket_ops;
    auto& state = impl_.get_implementation().state_;
    state = static_cast<ops::state_type>(state | ops::non_blocking);
    mark_unshared();
  }

  // For a socket whose bytes this program moves itself with MSG_DONTWAIT (the relay's client
  // socket): Asio puts a socket in non-blocking mode, an ioctl(FIONBIO), before its first wait,
  // which only Asio's own reads and writes need. Tells Asio that it has been done, so the fd
  // stays in blocking mode until someone asks for non_blocking(true) (the relay, for splice()).
  void skip_non_blocking_for_waits() {
    namespace ops = boost::asio::detail::socket_ops;
    auto& state = impl_.get_implementation().state_;
    state = static_cast<ops::state_type>(state | ops::internal_non_blocking);
  }

  // For a socket that only this object refers to (fresh from accept() or socket(), never
  // dup()ed), which Asio's accept and assign cannot know: closing it then leaves the epoll set
  // by itself, without an epoll_ctl(DEL).
  void mark_unshared() {
    namespace ops = boost::asio::detail::socket_ops;
    auto& state = impl_.get_implementation().state_;
    state = static_cast<ops::state_type>(state & ~ops::possible_dup);
  }
};
using Acceptor = boost::asio::basic_socket_acceptor<boost::asio::ip::tcp, Executor>;
template <typename T>
using Task = boost::asio::awaitable<T, Executor>;
// The completion token for awaiting an operation inside a Task.
inline constexpr boost::asio::use_awaitable_t<Executor> use_task{};

}  // namespace pb::net
