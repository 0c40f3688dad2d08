// End-to-end tests of the PROXY protocol: the real protobalance binary between clients that
// send a header (as a balancer in front would) and nodes that parse one.
#include <signal.h>

#include <regex>
#include <thread>

#include <gtest/gtest.h>

#include "support/backend.hpp"
#include "support/client.hpp"
#include "support/process.hpp"
#include "support/proxy_backend.hpp"

namespace pb::test {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;

std::unique_ptr<Balancer> start(const TempDir& dir, const std::string& toml) {
  const auto file = dir.write("pb.toml", toml);
  return std::make_unique<Balancer>(std::vector<std::string>{"--config", file.string()});
}

TEST(ProxyProtocol, HeaderInByteAtATimeAndV2OutTogether) {
  // Verifies header in + header out through the daemon: a v1 header that arrives one byte at
  // a time names the client, and the node (v2) sees that client and destination, then exactly
  // the client's bytes.
  ProxyBackend node;
  TempDir dir;
  auto balancer = start(dir, R"([[listener]]
name = "l"
listen = "127.0.0.1:0"
cluster = "c"
accept_proxy = true
trusted_proxies = ["127.0.0.0/8"]
[[cluster]]
name = "c"
proxy_protocol = "v2"
[[cluster.node]]
name = "n"
address = ")" + node.address() + "\"\n");
  Client client(balancer->address("l"));
  ASSERT_TRUE(client.connected()) << client.error();
  for (char c : std::string("PROXY TCP4 203.0.113.7 198.51.100.2 5555 80\r\n")) {
    ASSERT_TRUE(client.send_all(std::string(1, c)));
    std::this_thread::sleep_for(1ms);  // pacing, so that the bytes arrive one by one
  }
  ASSERT_TRUE(client.send_all("hello"));
  EXPECT_EQ(client.recv_exact(5), "hello");
  const auto seen = node.seen();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_TRUE(seen[0].valid);
  EXPECT_EQ(seen[0].source, asio::ip::tcp::endpoint(asio::ip::make_address("203.0.113.7"), 5555));
  EXPECT_EQ(seen[0].destination,
            asio::ip::tcp::endpoint(asio::ip::make_address("198.51.100.2"), 80));
}

TEST(ProxyProtocol, V1OutNamesAnIpv6ClientAndAnUntrustedSourceIsRefused) {
  // Verifies v1 out for an IPv6 client (TCP6, the client's own address and port), and on a
  // second listener with trusted_proxies that excludes loopback, that a client is closed at
  // once without a node being contacted.
  ProxyBackend node("::1");
  Backend untouched("u");
  TempDir dir;
  auto balancer = start(dir, R"([[listener]]
name = "v6"
listen = "[::1]:0"
cluster = "c"
[[listener]]
name = "guarded"
listen = "127.0.0.1:0"
cluster = "d"
accept_proxy = true
trusted_proxies = ["10.0.0.0/8"]
proxy_timeout = "10s"
[[cluster]]
name = "c"
[[cluster.node]]
name = "n"
address = ")" + node.address() + R"("
proxy_protocol = "v1"
[[cluster]]
name = "d"
[[cluster.node]]
name = "u"
address = ")" + untouched.address() + "\"\n");
  Client client(balancer->address("v6"));
  ASSERT_TRUE(client.connected()) << client.error();
  ASSERT_TRUE(client.send_all("hi"));
  EXPECT_EQ(client.recv_exact(2), "hi");
  const auto seen = node.seen();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_TRUE(seen[0].valid);
  EXPECT_EQ(seen[0].header.rfind("PROXY TCP6 ::1 ::1 ", 0), 0U) << seen[0].header;
  EXPECT_TRUE(seen[0].source.address().is_v6());

  Client refused(balancer->address("guarded"));
  ASSERT_TRUE(refused.connected()) << refused.error();
  const auto started = std::chrono::steady_clock::now();
  EXPECT_NE(refused.wait_closed(in(5s)), PeerClose::timeout) << "not closed at once";
  EXPECT_LT(std::chrono::steady_clock::now() - started, 5s);
  EXPECT_EQ(untouched.accepted(), 0);
}

TEST(ProxyProtocol, ReloadTurnsAcceptProxyOnForNewConnections) {
  // Verifies that a reload applies accept_proxy to a listener that stays on its address: a plain
  // client is served before, and refused (no node contacted) after.
  Backend node("n");
  TempDir dir;
  const std::string before = R"([[listener]]
name = "l"
listen = "127.0.0.1:0"
cluster = "c"
[[cluster]]
name = "c"
[[cluster.node]]
name = "n"
address = ")" + node.address() + "\"\n";
  auto balancer = start(dir, before);
  const std::string address = balancer->address("l");
  {
    Client client(address);
    ASSERT_TRUE(client.send_all("a"));
    EXPECT_EQ(client.recv_exact(1), "a");
  }
  EXPECT_EQ(node.accepted(), 1);
  // The same listener (same listen text: it keeps its socket), header required from now on.
  std::string after = before;
  after.insert(after.find("[[cluster]]"), "accept_proxy = true\n");
  dir.write("pb.toml", after);
  balancer->process().signal(SIGHUP);
  ASSERT_TRUE(balancer->process().wait_for(std::regex("PROXY protocol in on"), in(10s)));
  Client refused(address);
  ASSERT_TRUE(refused.send_all("GET / HTTP/1.0\r\n\r\n"));
  EXPECT_NE(refused.wait_closed(in(5s)), PeerClose::timeout);
  EXPECT_EQ(node.accepted(), 1);
}

}  // namespace
}  // namespace pb::test
