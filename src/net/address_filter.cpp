#include "protobalance/net/address_filter.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace pb::net {

namespace ip = boost::asio::ip;

std::size_t CidrSet::KeyHash::operator()(const Key& k) const noexcept {
  // splitmix64-style mixing of both halves.
  std::uint64_t x = k.high * 0x9E3779B97F4A7C15ull ^ (k.low + 0xBF58476D1CE4E5B9ull);
  x ^= x >> 31;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 29;
  return static_cast<std::size_t>(x);
}

CidrSet::Key CidrSet::mask(Key key, unsigned prefix) {
  if (prefix == 0) return {};
  if (prefix <= 64) {
    key.high &= prefix == 64 ? ~0ull : ~(~0ull >> prefix);
    key.low = 0;
  } else if (prefix < 128) {
    key.low &= ~(~0ull >> (prefix - 64));
  }
  return key;
}

namespace {

template <typename Bytes>
std::uint64_t load_be64(const Bytes& b, std::size_t at) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v = (v << 8) | b[at + i];
  return v;
}

}  // namespace

void CidrSet::insert(const config::Network& cidr) {
  const Key key = mask({load_be64(cidr.network, 0), load_be64(cidr.network, 8)}, cidr.prefix);
  auto it = std::find_if(lengths_.begin(), lengths_.end(),
                         [&](const Length& l) { return l.prefix == cidr.prefix; });
  if (it == lengths_.end()) {
    it = lengths_.insert(std::upper_bound(lengths_.begin(), lengths_.end(), cidr.prefix,
                                          [](unsigned p, const Length& l) { return p > l.prefix; }),
                         Length{cidr.prefix, {}});
  }
  if (it->networks.insert(key).second) ++size_;
}

bool CidrSet::contains(const ip::address& address) const {
  if (size_ == 0) return false;
  const auto bytes = config::as_v6_bytes(address);
  const Key key{load_be64(bytes, 0), load_be64(bytes, 8)};
  return std::any_of(lengths_.begin(), lengths_.end(), [&](const Length& l) {
    return l.networks.contains(mask(key, l.prefix));
  });
}

}  // namespace pb::net
