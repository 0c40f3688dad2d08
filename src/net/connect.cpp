#include "protobalance/net/connect.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace pb::net {

namespace asio = boost::asio;
using namespace boost::asio::experimental::awaitable_operators;

asio::awaitable<boost::system::error_code> connect_with_timeout(
    asio::ip::tcp::socket& socket, const asio::ip::tcp::endpoint& endpoint,
    std::chrono::milliseconds timeout) {
  asio::steady_timer timer(co_await asio::this_coro::executor, timeout);
  // as_tuple on both sides: with plain use_awaitable a refused connect would throw inside the
  // parallel group and `||` would wait for the timer before reporting it.
  auto result = co_await (socket.async_connect(endpoint, asio::as_tuple(asio::use_awaitable)) ||
                          timer.async_wait(asio::as_tuple(asio::use_awaitable)));
  if (result.index() == 0) {
    auto [ec] = std::get<0>(result);
    co_return ec;
  }
  boost::system::error_code ignored;
  socket.close(ignored);
  co_return asio::error::timed_out;
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
