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

#include "protobalance/config/network.hpp"

namespace pb::net {

// A set of networks (config::Network: the one parser, shared with pbadmin, so that the
// balancer and the command line accept exactly the same networks) with a lookup that costs one hash
// probe per distinct prefix length in the set (typically a handful), whatever the number of
// networks. Not thread-safe to modify; const lookups may run concurrently.
class CidrSet {
 public:
  void insert(const config::Network& network);
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
