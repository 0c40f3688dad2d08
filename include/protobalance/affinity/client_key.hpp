#pragma once

#include <array>
#include <boost/asio/ip/address.hpp>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pb::affinity {

// The identity of a client for affinity: its address cut to the cluster's prefix length.
// Both families live in one 16-byte form so that a key is a fixed-size value (cheap to hash and
// compare, no allocation on the hot path): an IPv4 address is stored IPv4-mapped
// (::ffff:a.b.c.d) and its prefix counted in the 128-bit space (an IPv4 /24 is 96 + 24 = 120).
// Bits beyond the prefix are always zero, so equal networks give equal keys.
struct ClientKey {
  std::array<std::uint8_t, 16> bytes{};
  std::uint8_t prefix = 0;  // 0..128, in the 128-bit space

  // True for keys made from IPv4 addresses (the mapped range with a prefix of at least 96).
  bool is_v4() const;
  // Prefix length in the key's own family: 0..32 for IPv4, 0..128 for IPv6.
  std::uint8_t family_prefix() const;

  // "192.0.2.7" (a whole address: /32 or /128), "192.0.2.0/24", "2001:db8:1:2::/64".
  std::string to_string() const;

  // True when the two networks share addresses, i.e. one contains the other. Used to match
  // a filter to entries: "192.0.2.7" matches the entry "192.0.2.0/24", and "192.0.2.0/24"
  // matches the entries "192.0.2.7" and "192.0.2.8".
  bool overlaps(const ClientKey& other) const;

  // The database form: the 16 address bytes then the prefix, 17 bytes. Compared as bytes
  // (memcmp, as SQLite compares blobs) it orders exactly like operator<=>, so a network is a
  // contiguous range of an index on it.
  static constexpr std::size_t kBlobSize = 17;
  std::array<std::uint8_t, kBlobSize> to_blob() const;
  // The inverse of to_blob(); nullopt unless `size` is 17 and the key is canonical (prefix
  // 0..128, no bits beyond it).
  static std::optional<ClientKey> from_blob(const void* data, std::size_t size);
  // The highest address of the network: every bit beyond the prefix set.
  std::array<std::uint8_t, 16> last_address() const;
  // This key cut to a shorter `new_prefix` (the network that contains it).
  ClientKey widened(std::uint8_t new_prefix) const;

  friend bool operator==(const ClientKey&, const ClientKey&) = default;
  // Orders by address bytes, then prefix: numeric order, unlike the text form ("10.0.0.9" sorts
  // before "10.0.0.10"), and IPv4 keys together.
  friend auto operator<=>(const ClientKey&, const ClientKey&) = default;
};

// Cuts `address` to the cluster's prefix: `prefix_v4` (clamped to 32) for IPv4 and for
// IPv4-mapped IPv6 (a dual-stack listener sees IPv4 clients that way), `prefix_v6` (clamped to
// 128) for other IPv6 addresses.
ClientKey make_key(const boost::asio::ip::address& address, std::uint8_t prefix_v4,
                   std::uint8_t prefix_v6);

// Parses what an operator types or what to_string() wrote: an address ("192.0.2.7",
// "2001:db8::1", a whole-address key) or a network ("192.0.2.0/24", "2001:db8::/64"; host bits
// are cut off). IPv4-mapped IPv6 is taken as IPv4. Returns nullopt for anything else, including
// a prefix beyond the family's width.
std::optional<ClientKey> parse_client(std::string_view text);

// Hash for unordered containers. Seeded once per process, so a client cannot choose addresses
// that collide in every balancer.
struct ClientKeyHash {
  std::size_t operator()(const ClientKey& key) const noexcept;
};

}  // namespace pb::affinity

template <>
struct std::hash<pb::affinity::ClientKey> : pb::affinity::ClientKeyHash {};
