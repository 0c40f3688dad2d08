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
  EXPECT_EQ(listener.trusted_proxies[0].to_string(), "10.0.0.0/8");
  EXPECT_EQ(listener.trusted_proxies[1].to_string(), "2001:db8::/32");
  EXPECT_EQ(listener.trusted_proxies[2].to_string(), "192.0.2.7/32");  // a bare address: one
}

TEST(ProxyConfig, BadValuesAreReportedAtTheValue) {
  // Verifies FILE:LINE:COL diagnostics for a bad proxy_protocol, a bad address block (with the
  // network parser's words, the same as allow, deny and pbadmin block: host bits are refused
  // and the message names the network meant), a trusted_proxies that is not an array, and a
  // bad accept_proxy type.
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
      "trusted_proxies: bad prefix length in \"10.0.0.0/33\": expected 0..32 after the /"));
  EXPECT_TRUE(single_error(
      load(listener + "trusted_proxies = [\"10.1.2.3/8\"]\n" + base), 5, 20,
      "trusted_proxies: host bits are set in \"10.1.2.3/8\": the network is 10.0.0.0/8"));
  EXPECT_TRUE(single_error(load(listener + "trusted_proxies = [\"fe80::1%eth0\"]\n" + base), 5, 20,
                           "trusted_proxies: bad network \"fe80::1%eth0\""));
  EXPECT_TRUE(single_error(load(listener + "trusted_proxies = \"10.0.0.0/8\"\n" + base), 5, 19,
                           "trusted_proxies must be an array"));
  EXPECT_TRUE(single_error(load(listener + "accept_proxy = \"yes\"\n" + base), 5, 16,
                           "accept_proxy"));
}

TEST(ProxyConfig, AddressBlocksMatchTheirAddressesAndIpv4MappedSources) {
  // Verifies Network::contains as trusted_proxies uses it: prefix bits only, families kept
  // apart, an IPv4-mapped IPv6 client matching an IPv4 block and an IPv4 client matching a block
  // written in IPv4-mapped IPv6 form.
  const auto parse = [](const char* text) { return *parse_network(text).network; };
  const auto v4 = parse("10.1.0.0/16");
  EXPECT_TRUE(v4.contains(boost::asio::ip::make_address("10.1.255.3")));
  EXPECT_FALSE(v4.contains(boost::asio::ip::make_address("10.2.0.1")));
  EXPECT_TRUE(v4.contains(boost::asio::ip::make_address("::ffff:10.1.2.3")));
  EXPECT_FALSE(v4.contains(boost::asio::ip::make_address("2001:db8::1")));
  const auto v6 = parse("2001:db8::/33");
  EXPECT_TRUE(v6.contains(boost::asio::ip::make_address("2001:db8:7fff::1")));
  EXPECT_FALSE(v6.contains(boost::asio::ip::make_address("2001:db8:8000::1")));
  EXPECT_TRUE(parse("0.0.0.0/0").contains(boost::asio::ip::make_address("192.0.2.1")));
  EXPECT_FALSE(parse("0.0.0.0/0").contains(boost::asio::ip::make_address("2001:db8::1")));
  EXPECT_TRUE(parse("::ffff:10.1.0.0/112").contains(boost::asio::ip::make_address("10.1.2.3")));
  EXPECT_FALSE(parse_network("10.0.0.0/08").network.has_value());
  EXPECT_FALSE(parse_network("10.0.0.0/").network.has_value());
  EXPECT_FALSE(parse_network("not-an-address").network.has_value());
}

}  // namespace
}  // namespace pb::config
