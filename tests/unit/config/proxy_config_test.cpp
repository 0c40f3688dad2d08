#include <gtest/gtest.h>

#include "load_test_support.hpp"

namespace pb::config {
namespace {

using namespace std::chrono_literals;
using test::describe;
using test::load;
using test::single_error;

TEST(ProxyConfig, DefaultsAreOffAnyTrustedSourceAndThreeSeconds) {
  // Verifies the defaults of the PROXY protocol keys: no header in, no header out, any source,
  // 3 s.
  const auto result = load(R"([[listener]]
name = "l"
listen = "127.0.0.1:0"
cluster = "c"
[[cluster]]
name = "c"
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
)");
  ASSERT_NE(result.config, nullptr) << describe(result);
  const auto& listener = result.config->listeners.at(0);
  EXPECT_FALSE(listener.accept_proxy);
  EXPECT_TRUE(listener.trusted_proxies.empty());
  EXPECT_EQ(listener.proxy_timeout, 3s);
  EXPECT_EQ(result.config->clusters.at(0).nodes.at(0).proxy_protocol, ProxyProtocol::off);
}

TEST(ProxyConfig, ANodeTakesTheClustersProxyProtocolUnlessItSetsItsOwn) {
  // Verifies the per-node default: the cluster's value (read before its nodes whatever the key
  // order in the file), overridden by a node's own.
  const auto cluster_first = load(R"([[listener]]
name = "l"
listen = "127.0.0.1:0"
cluster = "c"
accept_proxy = true
trusted_proxies = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]
proxy_timeout = "500ms"
[[cluster]]
name = "c"
proxy_protocol = "v2"
[[cluster.node]]
name = "a"
address = "127.0.0.1:1"
[[cluster.node]]
name = "b"
address = "127.0.0.1:2"
proxy_protocol = "v1"
)");
  ASSERT_NE(cluster_first.config, nullptr) << describe(cluster_first);
  const auto& nodes = cluster_first.config->clusters.at(0).nodes;
  EXPECT_EQ(nodes.at(0).proxy_protocol, ProxyProtocol::v2);
  EXPECT_EQ(nodes.at(1).proxy_protocol, ProxyProtocol::v1);
  const auto& listener = cluster_first.config->listeners.at(0);
  EXPECT_TRUE(listener.accept_proxy);
  EXPECT_EQ(listener.proxy_timeout, 500ms);
  ASSERT_EQ(listener.trusted_proxies.size(), 3U);
  EXPECT_EQ(listener.trusted_proxies[0].prefix, 8);
  EXPECT_EQ(listener.trusted_proxies[1].prefix, 32);
  EXPECT_EQ(listener.trusted_proxies[2].prefix, 32);  // a bare IPv4 address: a block of one
}

TEST(ProxyConfig, BadValuesAreReportedAtTheValue) {
  // Verifies FILE:LINE:COL diagnostics for a bad proxy_protocol, a bad address block, a
  // trusted_proxies that is not an array, and a bad accept_proxy type.
  const char* base = R"([[cluster]]
name = "c"
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
)";
  EXPECT_TRUE(single_error(load(std::string(base) + "proxy_protocol = \"v3\"\n"), 6, 18,
                           "proxy_protocol must be one of off, v1, v2, got 'v3'"));
  const std::string listener = R"([[listener]]
name = "l"
listen = "127.0.0.1:0"
cluster = "c"
)";
  EXPECT_TRUE(single_error(
      load(listener + "trusted_proxies = [\"10.0.0.0/33\"]\n" + base), 5, 20,
      "'10.0.0.0/33' is not an address block"));
  EXPECT_TRUE(single_error(load(listener + "trusted_proxies = \"10.0.0.0/8\"\n" + base), 5, 19,
                           "trusted_proxies must be an array"));
  EXPECT_TRUE(single_error(load(listener + "accept_proxy = \"yes\"\n" + base), 5, 16,
                           "accept_proxy"));
}

TEST(ProxyConfig, AddressBlocksMatchTheirAddressesAndIpv4MappedSources) {
  // Verifies Cidr::contains: prefix bits only, families kept apart, and an IPv4-mapped IPv6
  // client matching an IPv4 block.
  const auto v4 = *parse_cidr("10.1.0.0/16");
  EXPECT_TRUE(v4.contains(boost::asio::ip::make_address("10.1.255.3")));
  EXPECT_FALSE(v4.contains(boost::asio::ip::make_address("10.2.0.1")));
  EXPECT_TRUE(v4.contains(boost::asio::ip::make_address("::ffff:10.1.2.3")));
  EXPECT_FALSE(v4.contains(boost::asio::ip::make_address("2001:db8::1")));
  const auto v6 = *parse_cidr("2001:db8::/33");
  EXPECT_TRUE(v6.contains(boost::asio::ip::make_address("2001:db8:7fff::1")));
  EXPECT_FALSE(v6.contains(boost::asio::ip::make_address("2001:db8:8000::1")));
  EXPECT_TRUE(parse_cidr("0.0.0.0/0")->contains(boost::asio::ip::make_address("192.0.2.1")));
  EXPECT_FALSE(parse_cidr("10.0.0.0/08").has_value());
  EXPECT_FALSE(parse_cidr("10.0.0.0/").has_value());
  EXPECT_FALSE(parse_cidr("not-an-address").has_value());
}

}  // namespace
}  // namespace pb::config
