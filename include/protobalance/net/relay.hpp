#pragma once

#include <cstdint>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "protobalance/net/worker.hpp"

namespace pb::net {

// How a relay ended.
enum class RelayEnd : std::uint8_t {
  finished,         // both directions reached end of stream (half-closes passed on)
  node_closed_early,  // the node closed or reset before any byte moved either way: fall over
  client_error,     // reading from or writing to the client failed (reset, ...)
  node_error,       // reading from or writing to the node failed
  closed,           // closed locally: idle timeout, node taken offline, or stop
};

struct RelayResult {
  RelayEnd end = RelayEnd::finished;
  std::uint64_t bytes_to_node = 0;
  std::uint64_t bytes_to_client = 0;
};

// Moves bytes both ways between `client` and `node` until both directions have ended. An end of
// stream on one side is passed on as shutdown(send) to the other, whose direction keeps flowing
// (half-close). A hard error on either side ends both directions. Readiness first: a direction
// borrows a buffer from the worker's pool only while it has bytes to move, so an idle connection
// holds none. `entry.last_tick` is stamped on every transfer for the idle sweeper.
// With `allow_early_close`, a node that closes before any byte moved ends the relay with
// node_closed_early and leaves the client socket untouched, so the caller can try another node.
boost::asio::awaitable<RelayResult> relay(boost::asio::ip::tcp::socket& client,
                                          boost::asio::ip::tcp::socket& node, Worker& worker,
                                          SessionEntry& entry, bool allow_early_close);

}  // namespace pb::net
