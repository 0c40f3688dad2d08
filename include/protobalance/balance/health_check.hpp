#pragma once

// Active health checks ([cluster.health]) and agent queries ([cluster.agent]) over the network.
// Both are coroutines on the caller's executor (the runtime runs them on the prober's worker);
// the bookkeeping of results is Cluster::on_check() and the agent reply parser, so that the
// rules are testable without sockets.

#include <chrono>
#include <cstddef>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "protobalance/balance/node.hpp"

namespace pb::balance {

// One check of one node.
struct CheckTarget {
  boost::asio::ip::tcp::endpoint endpoint;  // the node's, or its host with [cluster.health] port
  std::chrono::milliseconds timeout{1000};  // for the whole check: connect, send and reply
  // Bytes sent right after connecting, before `send`. The hook for nodes that expect a header
  // first: a node with proxy_protocol set must get a PROXY protocol LOCAL header here.
  std::string preamble;
  std::string send;    // may be empty
  std::string expect;  // empty = a completed connect (and send) passes
};

struct CheckOutcome {
  CheckResult result = CheckResult::ok;
  std::string detail;  // for the log: what came back (printable, shortened), or the error
};

// Connects, sends preamble + send, and when `expect` is set reads until the reply contains it.
// timeout: no connect or no reply within the time (a partial reply that does not match is a
// mismatch); refused: the connect was refused (or failed otherwise: detail says how); reset:
// the node reset the connection; closed: it closed without a byte; mismatch: the reply (up to
// 4 KiB) does not contain `expect`.
boost::asio::awaitable<CheckOutcome> run_check(CheckTarget target);

// Connects to an agent, reads one line (up to '\n', end of stream, or 1 KiB) within `timeout`
// and closes. On failure `result` says why, as for run_check; the line excludes the '\n'.
struct AgentLine {
  CheckResult result = CheckResult::ok;
  std::string line;
  std::string detail;
};
boost::asio::awaitable<AgentLine> read_agent_line(boost::asio::ip::tcp::endpoint endpoint,
                                                  std::chrono::milliseconds timeout);

// `text` made printable and short for a log line: non-printable bytes as \xNN, at most `limit`
// bytes of the input, "..." when cut.
std::string printable(std::string_view text, std::size_t limit = 64);

// When node `index` of `count` is first checked within `interval`: evenly spread, so that many
// nodes are not all checked in the same millisecond.
std::chrono::milliseconds check_offset(std::size_t index, std::size_t count,
                                       std::chrono::milliseconds interval);

}  // namespace pb::balance
