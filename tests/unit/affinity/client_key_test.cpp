#include "protobalance/affinity/client_key.hpp"

#include <gtest/gtest.h>

#include <unordered_set>

namespace pb::affinity {
namespace {

boost::asio::ip::address ip(const char* text) {
  return boost::asio::ip::make_address(text);
}

TEST(ClientKey, WholeIpv4AddressPrintsBare) {
  // Verifies that a /32 key keeps the whole address and prints without a prefix.
  const ClientKey key = make_key(ip("192.0.2.7"), 32, 64);
  EXPECT_TRUE(key.is_v4());
  EXPECT_EQ(key.family_prefix(), 32);
  EXPECT_EQ(key.prefix, 128);
  EXPECT_EQ(key.to_string(), "192.0.2.7");
}

TEST(ClientKey, Ipv4CutToPrefix) {
  // Verifies that the host bits beyond an IPv4 prefix are cut, so a whole /24 shares one key.
  const ClientKey a = make_key(ip("192.0.2.7"), 24, 64);
  const ClientKey b = make_key(ip("192.0.2.200"), 24, 64);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.to_string(), "192.0.2.0/24");
  EXPECT_NE(a, make_key(ip("192.0.3.7"), 24, 64));
  EXPECT_EQ(make_key(ip("192.0.2.255"), 25, 64).to_string(), "192.0.2.128/25");
  EXPECT_EQ(make_key(ip("192.0.2.255"), 0, 64).to_string(), "0.0.0.0/0");
}

TEST(ClientKey, Ipv6CutToSlash64) {
  // Verifies that an IPv6 client is keyed by its /64 (the default): the interface id is cut.
  const ClientKey a = make_key(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), 32, 64);
  const ClientKey b = make_key(ip("2001:db8:1:2::1"), 32, 64);
  EXPECT_FALSE(a.is_v4());
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.to_string(), "2001:db8:1:2::/64");
  EXPECT_NE(a, make_key(ip("2001:db8:1:3::1"), 32, 64));
  EXPECT_EQ(make_key(ip("2001:db8::1"), 32, 128).to_string(), "2001:db8::1");
  EXPECT_EQ(make_key(ip("2001:db8:1:2:ffff::"), 32, 68).to_string(), "2001:db8:1:2:f000::/68");
}

TEST(ClientKey, MappedIpv6IsIpv4) {
  // Verifies that an IPv4-mapped IPv6 address (dual-stack listener) gives the IPv4 key, with the
  // IPv4 prefix, not the IPv6 one.
  const ClientKey mapped = make_key(ip("::ffff:192.0.2.7"), 24, 64);
  EXPECT_TRUE(mapped.is_v4());
  EXPECT_EQ(mapped, make_key(ip("192.0.2.99"), 24, 64));
  EXPECT_EQ(mapped.to_string(), "192.0.2.0/24");
}

TEST(ClientKey, PrefixesAreClamped) {
  // Verifies that prefixes beyond the family's width mean "the whole address".
  EXPECT_EQ(make_key(ip("192.0.2.7"), 200, 64).to_string(), "192.0.2.7");
  EXPECT_EQ(make_key(ip("2001:db8::1"), 32, 255).to_string(), "2001:db8::1");
}

TEST(ClientKey, ParseRoundTripsToString) {
  // Verifies that parse_client reads back what to_string wrote, for every kind of key.
  for (const ClientKey& key :
       {make_key(ip("192.0.2.7"), 32, 64), make_key(ip("192.0.2.7"), 24, 64),
        make_key(ip("2001:db8:1:2::9"), 32, 64), make_key(ip("2001:db8::9"), 32, 128),
        make_key(ip("::1"), 32, 128), make_key(ip("10.1.2.3"), 0, 64)}) {
    const auto parsed = parse_client(key.to_string());
    ASSERT_TRUE(parsed.has_value()) << key.to_string();
    EXPECT_EQ(*parsed, key) << key.to_string();
  }
}

TEST(ClientKey, ParseCutsHostBitsAndTakesMappedAsIpv4) {
  // Verifies that an operator's "192.0.2.7/24" means the network 192.0.2.0/24, and that
  // IPv4-mapped input is the IPv4 key.
  EXPECT_EQ(parse_client("192.0.2.7/24")->to_string(), "192.0.2.0/24");
  EXPECT_EQ(parse_client("2001:db8:1:2::5/64")->to_string(), "2001:db8:1:2::/64");
  EXPECT_EQ(*parse_client("::ffff:192.0.2.7"), *parse_client("192.0.2.7"));
  EXPECT_EQ(*parse_client("::ffff:192.0.2.7/120"), *parse_client("192.0.2.0/24"));
}

TEST(ClientKey, ParseRejectsGarbage) {
  // Verifies that anything but an address with an optional in-range prefix is refused.
  for (const char* bad : {"", "host.example", "192.0.2", "192.0.2.7/", "192.0.2.7/33",
                          "192.0.2.7/-1", "192.0.2.7/2x", "2001:db8::/129", "/24", "1.2.3.4 "}) {
    EXPECT_FALSE(parse_client(bad).has_value()) << "'" << bad << "'";
  }
}

TEST(ClientKey, OverlapsMatchesContainingNetworks) {
  // Verifies the filter rule: an address matches the network that holds it and vice versa,
  // and nothing matches across families or outside the network.
  const ClientKey net = *parse_client("192.0.2.0/24");
  const ClientKey host = *parse_client("192.0.2.7");
  EXPECT_TRUE(net.overlaps(host));
  EXPECT_TRUE(host.overlaps(net));
  EXPECT_TRUE(host.overlaps(host));
  EXPECT_FALSE(host.overlaps(*parse_client("192.0.2.8")));
  EXPECT_FALSE(net.overlaps(*parse_client("192.0.3.7")));
  EXPECT_FALSE(host.overlaps(*parse_client("2001:db8::/32")));
  EXPECT_TRUE(parse_client("2001:db8:1:2::/64")->overlaps(*parse_client("2001:db8:1:2::77")));
}

TEST(ClientKey, OrdersNumerically) {
  // Verifies that keys sort by address value, not by their text.
  EXPECT_LT(*parse_client("10.0.0.9"), *parse_client("10.0.0.10"));
  EXPECT_LT(*parse_client("10.0.0.0/24"), *parse_client("10.0.0.0"));
}

TEST(ClientKey, HashSeparatesKeys) {
  // Verifies that equal keys hash alike and that a few thousand distinct keys do not collapse
  // onto few hash values (the map's shards and buckets depend on it).
  EXPECT_EQ(ClientKeyHash{}(*parse_client("192.0.2.7")),
            ClientKeyHash{}(make_key(ip("::ffff:192.0.2.7"), 32, 64)));
  std::unordered_set<std::size_t> hashes;
  std::unordered_set<std::size_t> top_bits;
  for (unsigned i = 0; i < 4096; ++i) {
    const boost::asio::ip::address_v4 a(0x0A000000u + i);
    const std::size_t h = ClientKeyHash{}(make_key(a, 32, 64));
    hashes.insert(h);
    top_bits.insert(h >> 58);
  }
  EXPECT_EQ(hashes.size(), 4096u);
  EXPECT_EQ(top_bits.size(), 64u);  // every shard gets clients
  EXPECT_NE(ClientKeyHash{}(*parse_client("10.0.0.0/24")),
            ClientKeyHash{}(*parse_client("10.0.0.0")));
}

}  // namespace
}  // namespace pb::affinity
