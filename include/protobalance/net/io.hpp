#pragma once

// The I/O types of the data path. Every socket, acceptor and session coroutine of a worker is
// bound to its io_context's own executor type rather than the type-erased any_io_executor:
// a worker's objects never move to another context, and the concrete type makes each socket,
// pending operation and coroutine frame smaller and each executor copy a pointer copy
// (measured in BENCHMARKS.md).

#include <boost/asio/awaitable.hpp>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/basic_stream_socket.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace pb::net {

using Executor = boost::asio::io_context::executor_type;
using Socket = boost::asio::basic_stream_socket<boost::asio::ip::tcp, Executor>;
using Acceptor = boost::asio::basic_socket_acceptor<boost::asio::ip::tcp, Executor>;
template <typename T>
using Task = boost::asio::awaitable<T, Executor>;
// The completion token for awaiting an operation inside a Task.
inline constexpr boost::asio::use_awaitable_t<Executor> use_task{};

}  // namespace pb::net
