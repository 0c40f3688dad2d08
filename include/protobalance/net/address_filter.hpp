#pragma once

// Source-address access lists: `[[listener]] allow = [...]`, `deny = [...]` (and any list of
// networks, such as a block list or trusted proxies). Pure code, no sockets.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <utility>
#include <vector>

#include <boost/asio/ip/address.hpp>

namespace pb::net {

// An IP network. IPv4 networks live in the IPv4-mapped part of IPv6 space (::ffff:0:0/96), so
// one representation covers both families and an IPv4-mapped IPv6 source matches IPv4
// networks: 192.0.2.0/24 is held as ::ffff:192.0.2.0/120.
struct Cidr {
  boost::asio::ip::address_v6::bytes_type network{};  // host bits zero
  unsigned prefix = 0;                                // 0..128, in IPv6 space
  bool v4 = false;                                    // written as IPv4 (prefix >= 96)

  // "192.0.2.0/24", "2001:db8::/32", "192.0.2.66/32".
  std::string to_string() const;
  // True if `address` is in the network; an IPv4 address and its IPv4-mapped IPv6 form are the
  // same address. A CidrSet is the faster test for many networks.
  bool contains(const boost::asio::ip::address& address) const;
  bool operator==(const Cidr&) const = default;
};

// Parses "ADDR" (an IPv4 address is a /32, an IPv6 one a /128) or "ADDR/LEN" (LEN 0..32 for
// IPv4, 0..128 for IPv6, decimal without leading zeros). Addresses in their strict textual
// form (IPv4 dotted quad without leading zeros, IPv6 without a zone id). A network with host
// bits set ("192.0.2.1/24") is refused, since it most likely says something other than what
// was meant. `error` (when there is no value) says what is wrong and what is expected, for a
// config message "FILE:LINE:COL: <error>".
struct CidrResult {
  std::optional<Cidr> cidr;
  std::string error;
};
CidrResult parse_cidr(std::string_view text);

// A set of networks with a lookup that costs one hash probe per distinct prefix length in the
// set (typically a handful), whatever the number of networks. Not thread-safe to modify; const
// lookups may run concurrently.
class CidrSet {
 public:
  void insert(const Cidr& cidr);
  // True if `address` is in one of the networks; IPv4 and IPv4-mapped IPv6 addresses are the
  // same address; an IPv6 zone id is ignored.
  bool contains(const boost::asio::ip::address& address) const;
  bool empty() const { return size_ == 0; }
  std::size_t size() const { return size_; }

 private:
  struct Key {
    std::uint64_t high = 0, low = 0;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const noexcept;
  };
  struct Length {
    unsigned prefix;
    std::unordered_set<Key, KeyHash> networks;
  };
  static Key mask(Key key, unsigned prefix);

  std::vector<Length> lengths_;  // by decreasing prefix length
  std::size_t size_ = 0;
};

// allow/deny of one listener. A source is refused if it is in `deny` (deny wins), else
// accepted if `allow` is empty (no allow list: every source) or the source is in `allow`.
class AddressFilter {
 public:
  AddressFilter() = default;
  AddressFilter(CidrSet allow, CidrSet deny) : allow_(std::move(allow)), deny_(std::move(deny)) {}
  bool allows(const boost::asio::ip::address& source) const {
    return !deny_.contains(source) && (allow_.empty() || allow_.contains(source));
  }
  // True when the filter accepts every source (nothing to check on the data path).
  bool allows_all() const { return allow_.empty() && deny_.empty(); }

 private:
  CidrSet allow_;
  CidrSet deny_;
};

}  // namespace pb::net
