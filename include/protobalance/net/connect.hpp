#pragma once

#include <chrono>

#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

#include "protobalance/balance/node.hpp"
#include "protobalance/config/config.hpp"
#include "protobalance/net/worker.hpp"

namespace pb::net {

// Opens `socket` (non-blocking) on `worker`'s thread and connects it to `endpoint`, giving up
// after `timeout`. Errors are values: a refused or unreachable connect returns at once with its
// error, a connect still pending at the deadline returns boost::asio::error::timed_out. `slot` is
// the socket's registration in the worker's Poller (reset here; a connect that has to wait
// registers the socket); it must outlive the socket. The deadline is kept by the worker's
// shared deadline timer (Worker::arm). Used by the probes of unavailable nodes; a client's
// Connection connects by itself (it is its own state machine).
Task<boost::system::error_code> connect_with_timeout(
    Worker& worker, Fd& socket, PollSlot& slot, const boost::asio::ip::tcp::endpoint& endpoint,
    std::chrono::milliseconds timeout);

// What a node that expects a PROXY header takes from a probe or health check before anything
// else: v2 LOCAL, v1 "PROXY UNKNOWN", empty for "off".
std::string_view local_header(config::ProxyProtocol version);

// Sends what a node that expects a PROXY header takes from a probe or health check (v2 LOCAL,
// v1 "PROXY UNKNOWN"; nothing for "off") on a connected socket; false if it could not be sent
// whole at once (a fresh socket's send buffer always has room).
bool send_local_header(const Fd& socket, config::ProxyProtocol version);

// True for errors that mean this process, not the peer, is short of descriptors or memory
// (EMFILE, ENFILE, ENOBUFS, ENOMEM): such a failure says nothing about the node.
bool is_local_shortage(const boost::system::error_code& ec);

// The metric reason for a failed connect.
balance::FailureReason classify_connect_error(const boost::system::error_code& ec);

}  // namespace pb::net
