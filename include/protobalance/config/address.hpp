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

}  // namespace pb::config
