#pragma once

#include <string_view>

#include <boost/system/error_code.hpp>

#include "protobalance/balance/node.hpp"
#include "protobalance/config/config.hpp"

namespace pb::net {

// What a node that expects a PROXY header takes from a probe or health check before anything
// else: v2 LOCAL, v1 "PROXY UNKNOWN", empty for "off".
std::string_view local_header(config::ProxyProtocol version);

// True for errors that mean this process, not the peer, is short of descriptors or memory
// (EMFILE, ENFILE, ENOBUFS, ENOMEM): such a failure says nothing about the node.
bool is_local_shortage(const boost::system::error_code& ec);

// The metric reason for a failed connect.
balance::FailureReason classify_connect_error(const boost::system::error_code& ec);

}  // namespace pb::net
