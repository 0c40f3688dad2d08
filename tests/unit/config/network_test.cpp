#include "protobalance/config/network.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace pb::config {
namespace {

namespace ip = boost::asio::ip;

// The network's canonical text, or "<error: ...>".
std::string parsed(std::string_view text) {
  const auto r = parse_network(text);
  if (!r.network) return "<error: " + r.error + ">";
  EXPECT_TRUE(r.error.empty());
  return r.network->to_string();
}

bool refused(std::string_view text) { return !parse_network(text).network.has_value(); }

TEST(Network, AddressesAndNetworksOfBothFamilies) {
  // Verifies the accepted forms: a bare address is a /32 or /128, ADDR/LEN keeps its length, and
  // IPv6 is written back in its canonical (lower-case, compressed) form.
  EXPECT_EQ(parsed("192.0.2.7"), "192.0.2.7/32");
  EXPECT_EQ(parsed("192.0.2.0/24"), "192.0.2.0/24");
  EXPECT_EQ(parsed("0.0.0.0/0"), "0.0.0.0/0");
  EXPECT_EQ(parsed("2001:DB8::/32"), "2001:db8::/32");
  EXPECT_EQ(parsed("2001:db8::1"), "2001:db8::1/128");
  EXPECT_EQ(parsed("::/0"), "::/0");
  const auto v4 = parse_network("192.0.2.0/24").network;
  ASSERT_TRUE(v4);
  EXPECT_TRUE(v4->v4);
  EXPECT_EQ(v4->prefix, 96U + 24U);
}

TEST(Network, RefusesWhatMostLikelyMeansSomethingElse) {
  // Verifies the refusals, each with a message saying what is expected: host bits set, lengths
  // out of range or with leading zeros, non-strict address forms, zone ids, spaces.
  const auto host_bits = parse_network("192.0.2.1/24");
  EXPECT_FALSE(host_bits.network);
  EXPECT_NE(
      host_bits.error.find("host bits are set in \"192.0.2.1/24\": the network is 192.0.2.0/24"),
      std::string::npos)
      << host_bits.error;
  EXPECT_NE(parse_network("2001:db8::1/64").error.find("2001:db8::/64"), std::string::npos);
  EXPECT_NE(parse_network("10.0.0.0/33").error.find("expected 0..32"), std::string::npos);
  EXPECT_NE(parse_network("::/129").error.find("expected 0..128"), std::string::npos);
  EXPECT_NE(parse_network("example.com").error.find("expected an IPv4 or IPv6 address"),
            std::string::npos);
  for (const char* bad : {"", "/24", "192.0.2.0/", "192.0.2.0/024", "192.0.2.0/+24",
                          "192.0.2.010", "127.1", "1.2.3", "0x7f.0.0.1", "fe80::1%eth0",
                          " 192.0.2.0", "192.0.2.0/24 ", "192.0.2.0/24/8", "2001:db8:::1"}) {
    EXPECT_TRUE(refused(bad)) << '"' << bad << '"';
  }
}

TEST(Network, ContainsTreatsIpv4MappedAsIpv4) {
  // Verifies membership at the network's edges, and that an IPv4 network contains the
  // IPv4-mapped IPv6 form of its addresses (and an IPv4-mapped network the IPv4 ones).
  const auto net = parse_network("192.0.2.0/24").network;
  ASSERT_TRUE(net);
  EXPECT_TRUE(net->contains(ip::make_address("192.0.2.0")));
  EXPECT_TRUE(net->contains(ip::make_address("192.0.2.255")));
  EXPECT_FALSE(net->contains(ip::make_address("192.0.3.0")));
  EXPECT_TRUE(net->contains(ip::make_address("::ffff:192.0.2.9")));
  EXPECT_FALSE(net->contains(ip::make_address("2001:db8::1")));
  const auto mapped = parse_network("::ffff:192.0.2.0/120").network;
  ASSERT_TRUE(mapped);
  EXPECT_TRUE(mapped->contains(ip::make_address("192.0.2.200")));
  const auto v6 = parse_network("2001:db8::/32").network;
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->contains(ip::make_address("2001:db8:ffff::1")));
  EXPECT_FALSE(v6->contains(ip::make_address("2001:db9::")));
}

}  // namespace
}  // namespace pb::config
