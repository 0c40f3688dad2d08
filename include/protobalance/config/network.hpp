#pragma once

#include <optional>
#include <string>
#include <string_view>

#include <boost/asio/ip/address.hpp>

namespace pb::config {

// An IP network, the one type and parser for every list of networks: `trusted_proxies`, `allow`,
// `deny`, the block list (the balancer's, PUT /v1/blocks and pbadmin's arguments alike).
// IPv4 networks live in the IPv4-mapped part of IPv6 space (::ffff:0:0/96), so one
// representation covers both families and an IPv4-mapped IPv6 source matches IPv4 networks:
// 192.0.2.0/24 is held as ::ffff:192.0.2.0/120.
struct Network {
  boost::asio::ip::address_v6::bytes_type network{};  // host bits zero
  unsigned prefix = 0;                                // 0..128, in IPv6 space
  bool v4 = false;                                    // written as IPv4 (prefix >= 96)

  // "192.0.2.0/24", "2001:db8::/32", "192.0.2.66/32".
  std::string to_string() const;
  // True if `address` is in the network; an IPv4 address and its IPv4-mapped IPv6 form are the
  // same address.
  bool contains(const boost::asio::ip::address& address) const;
  bool operator==(const Network&) const = default;
};

// Parses "ADDR" (an IPv4 address is a /32, an IPv6 one a /128) or "ADDR/LEN" (LEN 0..32 for
// IPv4, 0..128 for IPv6, decimal without leading zeros). Addresses in their strict textual
// form (IPv4 dotted quad without leading zeros, IPv6 without a zone id). A network with host
// bits set ("192.0.2.1/24") is refused everywhere, with the network it would mean in the message:
// in an access list or a block it most likely says something other than what was meant, and
// masking it quietly (nginx warns, then masks) would widen the list without the operator seeing.
// `error` (when there is no value) says what is wrong and what is expected, for a config message
// "FILE:LINE:COL: <error>" or a command-line usage error.
struct NetworkResult {
  std::optional<Network> network;
  std::string error;
};
NetworkResult parse_network(std::string_view text);

// `address` in the IPv6 space networks live in: an IPv4 address as its IPv4-mapped form.
boost::asio::ip::address_v6::bytes_type as_v6_bytes(const boost::asio::ip::address& address);

}  // namespace pb::config
