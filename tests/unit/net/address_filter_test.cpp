#include "protobalance/net/address_filter.hpp"

#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace pb::net {
namespace {

namespace ip = boost::asio::ip;

config::Network cidr(const char* text) {
  const auto r = config::parse_network(text);
  EXPECT_TRUE(r.network.has_value()) << text << ": " << r.error;
  return r.network.value_or(config::Network{});
}

CidrSet set_of(std::initializer_list<const char*> networks) {
  CidrSet set;
  for (const char* n : networks) set.insert(cidr(n));
  return set;
}

bool in(const CidrSet& set, const char* address) {
  return set.contains(ip::make_address(address));
}

TEST(AddressFilterTest, ParseAndPrint) {
  // Verifies networks parse to the right prefix and print back; a bare address is /32 or /128.
  EXPECT_EQ(cidr("192.0.2.0/24").to_string(), "192.0.2.0/24");
  EXPECT_EQ(cidr("192.0.2.0/24").prefix, 120u);
  EXPECT_EQ(cidr("192.0.2.66").to_string(), "192.0.2.66/32");
  EXPECT_EQ(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
  EXPECT_EQ(cidr("2001:DB8::/32").to_string(), "2001:db8::/32");
  EXPECT_EQ(cidr("2001:db8::1").to_string(), "2001:db8::1/128");
  EXPECT_EQ(cidr("::/0").prefix, 0u);
  EXPECT_EQ(cidr("::ffff:192.0.2.0/120").prefix, 120u);
  EXPECT_FALSE(cidr("::ffff:192.0.2.0/120").v4);
}

TEST(AddressFilterTest, ParseErrors) {
  // Verifies bad networks are refused with a message naming the input and what is expected.
  for (const char* bad :
       {"", "/24", "192.0.2.0/", "192.0.2.0/33", "192.0.2.0/024", "192.0.2.0/-1", "192.0.2/24",
        "192.0.2.0/24/1", "2001:db8::/129", "fe80::1%eth0", "01.2.3.4", "host.example",
        "192.0.2.0 /24", "2001:db8::/3x", "1.2.3.4.5"}) {
    const auto r = config::parse_network(bad);
    EXPECT_FALSE(r.network.has_value()) << bad;
    EXPECT_FALSE(r.error.empty()) << bad;
  }
  const auto host_bits = config::parse_network("192.0.2.1/24");
  ASSERT_FALSE(host_bits.network.has_value());
  EXPECT_NE(host_bits.error.find("host bits"), std::string::npos);
  EXPECT_NE(host_bits.error.find("192.0.2.0/24"), std::string::npos) << host_bits.error;
  const auto v6_bits = config::parse_network("2001:db8::1/64");
  ASSERT_FALSE(v6_bits.network.has_value());
  EXPECT_NE(v6_bits.error.find("2001:db8::/64"), std::string::npos) << v6_bits.error;
  EXPECT_NE(config::parse_network("10.0.0.0/40").error.find("0..32"), std::string::npos);
}

TEST(AddressFilterTest, Contains) {
  // Verifies membership at network edges, for IPv4, IPv6 and IPv4-mapped IPv6 sources.
  const auto set = set_of({"192.0.2.0/24", "198.51.100.7", "2001:db8::/32", "10.0.0.0/8"});
  EXPECT_EQ(set.size(), 4u);
  EXPECT_TRUE(in(set, "192.0.2.0"));
  EXPECT_TRUE(in(set, "192.0.2.255"));
  EXPECT_FALSE(in(set, "192.0.3.0"));
  EXPECT_FALSE(in(set, "192.0.1.255"));
  EXPECT_TRUE(in(set, "::ffff:192.0.2.9"));  // IPv4-mapped source matches the IPv4 network
  EXPECT_TRUE(in(set, "198.51.100.7"));
  EXPECT_FALSE(in(set, "198.51.100.8"));
  EXPECT_TRUE(in(set, "10.255.255.255"));
  EXPECT_TRUE(in(set, "2001:db8:ffff::1"));
  EXPECT_FALSE(in(set, "2001:db9::1"));
  EXPECT_FALSE(in(set, "::192.0.2.1"));  // IPv4-compatible is not IPv4-mapped
  EXPECT_FALSE(CidrSet{}.contains(ip::make_address("1.2.3.4")));
}

TEST(AddressFilterTest, WholeSpaces) {
  // Verifies 0.0.0.0/0 holds every IPv4 (and mapped) address only, ::/0 every address.
  const auto v4 = set_of({"0.0.0.0/0"});
  EXPECT_TRUE(in(v4, "255.255.255.255"));
  EXPECT_TRUE(in(v4, "::ffff:1.2.3.4"));
  EXPECT_FALSE(in(v4, "2001:db8::1"));
  const auto all = set_of({"::/0"});
  EXPECT_TRUE(in(all, "1.2.3.4"));
  EXPECT_TRUE(in(all, "2001:db8::1"));
}

TEST(AddressFilterTest, PrefixLengthsOfEverySize) {
  // Verifies masking at every prefix length: an address is in its own /n and not in the /n
  // next to it.
  const auto address = ip::make_address_v6("2001:db8:aaaa:bbbb:cccc:dddd:eeee:ffff");
  for (unsigned n = 1; n <= 128; ++n) {
    auto bytes = address.to_bytes();
    for (unsigned bit = n; bit < 128; ++bit) {
      bytes[bit / 8] &= static_cast<unsigned char>(~(0x80u >> (bit % 8)));
    }
    const std::string text = ip::address_v6(bytes).to_string() + "/" + std::to_string(n);
    CidrSet set;
    set.insert(cidr(text.c_str()));
    EXPECT_TRUE(set.contains(address)) << text;
    auto other = address.to_bytes();
    other[(n - 1) / 8] ^= static_cast<unsigned char>(0x80u >> ((n - 1) % 8));  // last network bit
    EXPECT_FALSE(set.contains(ip::address_v6(other))) << text;
  }
}

TEST(AddressFilterTest, AllowDeny) {
  // Verifies deny wins over allow, an empty allow list allows everyone, and allows_all().
  const AddressFilter filter(set_of({"192.0.2.0/24", "2001:db8::/32"}), set_of({"192.0.2.66"}));
  EXPECT_FALSE(filter.allows_all());
  EXPECT_TRUE(filter.allows(ip::make_address("192.0.2.1")));
  EXPECT_FALSE(filter.allows(ip::make_address("192.0.2.66")));
  EXPECT_FALSE(filter.allows(ip::make_address("::ffff:192.0.2.66")));
  EXPECT_FALSE(filter.allows(ip::make_address("203.0.113.1")));
  EXPECT_TRUE(filter.allows(ip::make_address("2001:db8::5")));

  const AddressFilter deny_only(CidrSet{}, set_of({"203.0.113.0/24"}));
  EXPECT_TRUE(deny_only.allows(ip::make_address("192.0.2.1")));
  EXPECT_FALSE(deny_only.allows(ip::make_address("203.0.113.9")));
  EXPECT_TRUE(AddressFilter{}.allows_all());
  EXPECT_TRUE(AddressFilter{}.allows(ip::make_address("::1")));
}

TEST(AddressFilterTest, ManyNetworks) {
  // Verifies a set of 10,000 host networks finds each of them and duplicates count once.
  CidrSet set;
  for (unsigned i = 0; i < 10000; ++i) {
    const std::string text =
        "10." + std::to_string(i / 256 % 256) + "." + std::to_string(i % 256) + ".1";
    set.insert(cidr(text.c_str()));
    set.insert(cidr(text.c_str()));
  }
  EXPECT_EQ(set.size(), 10000u);
  EXPECT_TRUE(in(set, "10.39.15.1"));   // i = 9999
  EXPECT_FALSE(in(set, "10.39.16.1"));  // i = 10000
  EXPECT_FALSE(in(set, "10.0.0.2"));
}

}  // namespace
}  // namespace pb::net
