#pragma once

#include <string>
#include <string_view>
#include <variant>

#include "protobalance/config/config.hpp"

namespace pb::config {

// Parses "host:port", "[v6]:port" or "v4:port"; a host name is resolved (first address wins,
// IPv4 preferred). Port must be 0..65535 (0 only when `allow_port_zero`). On failure, the
// string says what is wrong ("expected host:port", "cannot resolve 'x': ...").
std::variant<Endpoint, std::string> parse_endpoint(std::string_view text, bool allow_port_zero);

// "192.0.2.7:80", "[2001:db8::7]:80": an endpoint as the configuration writes it.
std::string format_endpoint(const Endpoint& ep);

// The value of one hexadecimal digit (either case), or -1.
int hex_value(char c);

}  // namespace pb::config
