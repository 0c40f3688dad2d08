#include "protobalance/net/relay.hpp"

#include <sys/socket.h>

#include <cerrno>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace pb::net {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace boost::asio::experimental::awaitable_operators;

namespace {

// Reads per readiness event before yielding to other sessions of the worker (fairness).
constexpr int kMaxBurst = 16;

enum class PumpEnd : std::uint8_t { eof, read_error, write_error, aborted, early_close };

struct RelayState {
  Worker& worker;
  SessionEntry& entry;
  bool allow_early_close;
  bool consumed = false;  // a byte was read from either side: no fall-over from here on
  std::uint64_t to_node = 0;
  std::uint64_t to_client = 0;
};

// Writes all of [data, data + size) to `to`, waiting for writability as needed.
asio::awaitable<bool> write_all(tcp::socket& to, const std::byte* data, std::size_t size) {
  std::size_t done = 0;
  while (done < size) {
    ssize_t n = ::send(to.native_handle(), data + done, size - done, MSG_NOSIGNAL);
    if (n >= 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) co_return false;
    auto [ec] = co_await to.async_wait(tcp::socket::wait_write, asio::as_tuple(asio::use_awaitable));
    if (ec) co_return false;
  }
  co_return true;
}

// One direction of the relay. Tries to read first (the peer has often sent already), then waits
// for readiness; the buffer lease never spans a wait for readability.
asio::awaitable<PumpEnd> pump(tcp::socket& from, tcp::socket& to, bool from_node, RelayState& st) {
  std::uint64_t& counter = from_node ? st.to_client : st.to_node;
  for (;;) {
    bool drained = false;
    {
      auto buffer = st.worker.buffers().borrow();
      for (int burst = 0; burst < kMaxBurst && !drained; ++burst) {
        ssize_t n = ::recv(from.native_handle(), buffer.data(), buffer.size(), 0);
        if (n > 0) {
          st.consumed = true;
          st.entry.last_tick = st.worker.tick();
          auto size = static_cast<std::size_t>(n);
          if (!co_await write_all(to, buffer.data(), size)) {
            co_return to.is_open() ? PumpEnd::write_error : PumpEnd::aborted;
          }
          counter += size;
          // A short read almost always means the socket is drained; skip the recv that would
          // only say EAGAIN.
          drained = size < buffer.size();
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
          drained = true;
          break;
        }
        if (!from.is_open()) co_return PumpEnd::aborted;
        if (from_node && st.allow_early_close && !st.consumed) co_return PumpEnd::early_close;
        if (n < 0) co_return PumpEnd::read_error;
        st.consumed = true;  // a FIN passed on counts as traffic: the node may react to it
        boost::system::error_code ignored;
        to.shutdown(tcp::socket::shutdown_send, ignored);  // pass the FIN on
        co_return PumpEnd::eof;
      }
    }
    if (!drained) {
      // Burst limit reached with bytes still waiting: let the worker's other sessions run.
      co_await asio::post(co_await asio::this_coro::executor, asio::use_awaitable);
      continue;
    }
    auto [ec] = co_await from.async_wait(tcp::socket::wait_read, asio::as_tuple(asio::use_awaitable));
    if (ec) co_return PumpEnd::aborted;
  }
}

// Runs one direction; when it ends in a way that must end the other direction too, cancels that
// direction's pending wait. An early close cancels only the client's wait so the client socket
// stays usable for the next node.
asio::awaitable<PumpEnd> direction(tcp::socket& from, tcp::socket& to, bool from_node,
                                   RelayState& st) {
  PumpEnd end = co_await pump(from, to, from_node, st);
  boost::system::error_code ignored;
  switch (end) {
    case PumpEnd::eof:
    case PumpEnd::aborted:
      break;
    case PumpEnd::early_close:
      to.cancel(ignored);  // `to` is the client here
      break;
    case PumpEnd::read_error:
    case PumpEnd::write_error:
      from.cancel(ignored);
      to.cancel(ignored);
      break;
  }
  co_return end;
}

}  // namespace

asio::awaitable<RelayResult> relay(tcp::socket& client, tcp::socket& node, Worker& worker,
                                   SessionEntry& entry, bool allow_early_close) {
  RelayState st{worker, entry, allow_early_close};
  // `&&`, not `||`: the first end of stream must not end the other direction (half-close).
  auto [up, down] = co_await (direction(client, node, false, st) && direction(node, client, true, st));

  RelayResult result;
  result.bytes_to_node = st.to_node;
  result.bytes_to_client = st.to_client;
  if (down == PumpEnd::early_close) {
    result.end = RelayEnd::node_closed_early;
  } else if (entry.killed || entry.idle_expired) {
    result.end = RelayEnd::closed;
  } else if (up == PumpEnd::read_error || down == PumpEnd::write_error) {
    result.end = RelayEnd::client_error;
  } else if (down == PumpEnd::read_error || up == PumpEnd::write_error) {
    result.end = RelayEnd::node_error;
  } else if (up == PumpEnd::aborted || down == PumpEnd::aborted) {
    result.end = RelayEnd::closed;
  } else {
    result.end = RelayEnd::finished;
  }
  co_return result;
}

}  // namespace pb::net
