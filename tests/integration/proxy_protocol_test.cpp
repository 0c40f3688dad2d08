// End-to-end tests of the PROXY protocol out (and in + out together): the real protobalance
// binary between clients that may send a header (as a balancer in front would) and nodes that
// parse one, as a server behind HAProxy's `send-proxy` would.
#include <signal.h>

#include <regex>
#include <thread>

#include <gtest/gtest.h>

#include "support/backend.hpp"
#include "support/client.hpp"
#include "support/eventually.hpp"
#include "support/process.hpp"
#include "support/proxy_backend.hpp"
#include "support/proxy_header_bytes.hpp"

namespace pb::test {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
using asio::ip::tcp;

// "127.0.0.1:PORT" or "[::1]:PORT" as an endpoint.
tcp::endpoint endpoint_of(const std::string& address) {
  const auto colon = address.rfind(':');
  std::string host = address.substr(0, colon);
  if (!host.empty() && host.front() == '[') host = host.substr(1, host.size() - 2);
  return {asio::ip::make_address(host), static_cast<std::uint16_t>(std::stoi(address.substr(colon + 1)))};
}

// The endpoint the daemon sees as the client: the client's own address and port.
tcp::endpoint client_endpoint(const Client& client, const std::string& listener_address) {
  return {endpoint_of(listener_address).address(), client.local_port()};
}

// Sends `bytes` one at a time, each in its own segment (TCP_NODELAY; the pacing keeps the
// segments apart, it waits for no condition).
bool send_byte_at_a_time(Client& client, std::string_view bytes) {
  for (char c : bytes) {
    if (!client.send_all(std::string_view(&c, 1))) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

std::vector<ProxyBackend::Seen> wait_seen(const ProxyBackend& node, std::size_t n) {
  eventually([&] { return node.seen().size() >= n; }, in(10s));
  return node.seen();
}

// The v1 line a node must see for a connection from `source` to `destination`.
std::string v1_line(const tcp::endpoint& source, const tcp::endpoint& destination) {
  return std::string("PROXY ") + (source.address().is_v4() ? "TCP4 " : "TCP6 ") +
         source.address().to_string() + " " + destination.address().to_string() + " " +
         std::to_string(source.port()) + " " + std::to_string(destination.port()) + "\r\n";
}

// Checks the raw header a node received against what the daemon had to write: the v1 line
// exactly, or for v2 the PROXY command, the TCP family of the addresses, and the endpoints.
void expect_header(const ProxyBackend::Seen& seen, const std::string& version,
                   const tcp::endpoint& source, const tcp::endpoint& destination) {
  ASSERT_TRUE(seen.valid);
  EXPECT_FALSE(seen.local);
  EXPECT_EQ(seen.source, source);
  EXPECT_EQ(seen.destination, destination);
  if (version == "v1") {
    EXPECT_EQ(seen.header, v1_line(source, destination));
    return;
  }
  ASSERT_GE(seen.header.size(), 16U);
  EXPECT_EQ(seen.header.substr(0, 12), proxy_bytes::kV2Signature);
  EXPECT_EQ(static_cast<std::uint8_t>(seen.header[12]), proxy_bytes::kProxy);
  EXPECT_EQ(static_cast<std::uint8_t>(seen.header[13]),
            source.address().is_v4() ? proxy_bytes::kTcp4 : proxy_bytes::kTcp6);
}

// ---- Out: the header names the client and the listener ----

class HeaderOut : public ::testing::TestWithParam<const char*> {};

TEST_P(HeaderOut, NamesTheClientAndTheListenerForEachFamily) {
  // Verifies that a node behind proxy_protocol = v1/v2 sees the client's own address and port
  // and, as destination, the listener's address and port: for IPv4 and IPv6 clients, each to
  // an IPv4 and an IPv6 node (the node's family does not change the header: it describes the
  // client's connection). Then exactly the client's bytes follow. (Client and listener always
  // share a family here, IPv6 listeners being IPv6-only; mixed families are the codec's unit
  // tests.)
  const std::string version = GetParam();
  ProxyBackend node4("127.0.0.1");
  ProxyBackend node6("::1");
  std::string toml;
  for (const auto& [listener, host, cluster] :
       {std::tuple{"v4_to_v4", "127.0.0.1", "n4"}, std::tuple{"v4_to_v6", "127.0.0.1", "n6"},
        std::tuple{"v6_to_v6", "[::1]", "n6"}, std::tuple{"v6_to_v4", "[::1]", "n4"}}) {
    toml += std::string("[[listener]]\nname = \"") + listener + "\"\nlisten = \"" + host +
            ":0\"\ncluster = \"" + cluster + "\"\n";
  }
  for (const auto& [cluster, node] : {std::pair{"n4", &node4}, std::pair{"n6", &node6}}) {
    toml += std::string("[[cluster]]\nname = \"") + cluster + "\"\nproxy_protocol = \"" + version +
            "\"\n[[cluster.node]]\nname = \"n\"\naddress = \"" + node->address() + "\"\n";
  }
  TempDir dir;
  auto balancer = start_daemon(dir, toml);
  for (const auto& [listener, node] :
       {std::pair{"v4_to_v4", &node4}, std::pair{"v4_to_v6", &node6},
        std::pair{"v6_to_v6", &node6}, std::pair{"v6_to_v4", &node4}}) {
    SCOPED_TRACE(listener);
    const std::size_t before = node->seen().size();
    const std::string address = balancer->address(listener);
    Client client(address);
    ASSERT_TRUE(client.connected()) << client.error();
    const std::string payload = "payload of " + std::string(listener);
    ASSERT_TRUE(client.send_all(payload));
    EXPECT_EQ(client.recv_exact(payload.size()), payload);
    const auto seen = wait_seen(*node, before + 1);
    ASSERT_EQ(seen.size(), before + 1);
    expect_header(seen.back(), version, client_endpoint(client, address), endpoint_of(address));
  }
}

INSTANTIATE_TEST_SUITE_P(Versions, HeaderOut, ::testing::Values("v1", "v2"),
                         [](const auto& test) { return std::string(test.param); });

// ---- Fall-over between nodes that want different headers ----

enum class Failure { refused, closes_after_accept };

struct FallOverCase {
  const char* name;
  const char* first_version;  // the node that fails
  Failure failure;
  const char* second_version;  // the node that takes the client
};

class FallOver : public ::testing::TestWithParam<FallOverCase> {};

TEST_P(FallOver, TheNextNodeGetsItsOwnHeaderOrNone) {
  // Verifies that a fall-over writes the header of the node that takes the client, not of the
  // node that failed: from a v2 node that refuses (or accepts, then closes before any data) to
  // an "off" node, that node receives exactly the client's bytes and no header; from an "off"
  // node that refuses to a v2 node, that node receives a header naming the client.
  const FallOverCase& c = GetParam();
  Backend closing("first", BackendMode::close_at_once);
  const std::string first_address =
      c.failure == Failure::refused ? closed_port_address() : closing.address();
  // The off node speaks first, so that the client sends only once the fall-over is done (bytes
  // that reached the failing node would make it a node that failed after data, not before).
  Backend off_node("second", BackendMode::greet_then_fin);
  ProxyBackend header_node;
  const bool second_off = std::string(c.second_version) == "off";
  const std::string second_address = second_off ? off_node.address() : header_node.address();
  TempDir dir;
  auto balancer = start_daemon(dir, R"([[listener]]
name = "l"
listen = "127.0.0.1:0"
cluster = "c"
[[cluster]]
name = "c"
retry_interval = "1h"
[[cluster.node]]
name = "first"
address = ")" + first_address + R"("
proxy_protocol = ")" + c.first_version + R"("
[[cluster.node]]
name = "second"
address = ")" + second_address + R"("
proxy_protocol = ")" + c.second_version + R"("
tier = 2
)");
  const std::string address = balancer->address("l");
  Client client(address);
  ASSERT_TRUE(client.connected()) << client.error();
  const std::string payload = random_bytes(3000, 11);
  if (second_off) {
    EXPECT_EQ(client.recv_line(), "second");
    ASSERT_TRUE(client.send_all(payload));
    client.shutdown_write();
    EXPECT_NE(client.wait_closed(in(10s)), PeerClose::timeout);
    EXPECT_TRUE(eventually([&] { return off_node.received().size() >= payload.size(); }, in(10s)));
    EXPECT_EQ(sha256_hex(off_node.received()), sha256_hex(payload))
        << "the node received " << off_node.received().size() << " bytes, the client sent "
        << payload.size();
  } else {
    ASSERT_TRUE(client.send_all(payload));
    EXPECT_EQ(sha256_hex(client.recv_exact(payload.size())), sha256_hex(payload));
    const auto seen = wait_seen(header_node, 1);
    ASSERT_EQ(seen.size(), 1U);
    expect_header(seen[0], c.second_version, client_endpoint(client, address),
                  endpoint_of(address));
  }
  if (c.failure == Failure::closes_after_accept) {
    EXPECT_GE(closing.accepted(), 1);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Directions, FallOver,
    ::testing::Values(FallOverCase{"V2RefusesToOff", "v2", Failure::refused, "off"},
                      FallOverCase{"V2ClosesToOff", "v2", Failure::closes_after_accept, "off"},
                      FallOverCase{"OffRefusesToV2", "off", Failure::refused, "v2"},
                      FallOverCase{"OffRefusesToV1", "off", Failure::refused, "v1"}),
    [](const auto& test) { return std::string(test.param.name); });

// ---- Probes and health checks send LOCAL ----

struct LocalCase {
  const char* name;
  const char* version;
  bool health_checks;  // [cluster.health]; otherwise the probe of an unavailable node
};

class LocalHeader : public ::testing::TestWithParam<LocalCase> {};

TEST_P(LocalHeader, ProbesAndChecksSayTheyAreNoClient) {
  // Verifies that what the balancer sends on its own to a node that requires a header is a
  // valid header saying "no client": v2 LOCAL (the 16 bytes, AF_UNSPEC) or "PROXY UNKNOWN\r\n"
  // for v1; both from the probe of an unavailable node and from a [cluster.health] check (whose
  // PING the node answers after the header, so the check passes). The node never sees an
  // invalid header, and serves clients (with a full header) afterwards.
  const LocalCase& c = GetParam();
  const std::string version = c.version;
  const std::string local = version == "v1" ? "PROXY UNKNOWN\r\n" : proxy_bytes::v2_local();
  ProxyBackend node;
  Backend spare("spare", BackendMode::greet_echo);
  std::string toml = R"([[listener]]
name = "l"
listen = "127.0.0.1:0"
cluster = "c"
[[cluster]]
name = "c"
retry_interval = "200ms"
)";
  if (c.health_checks) {
    toml += R"([cluster.health]
interval = "500ms"
fall = 1
send = "PING\r\n"
expect = "PING"
)";
  }
  toml += R"([[cluster.node]]
name = "p"
address = ")" + node.address() + R"("
proxy_protocol = ")" + version + "\"\n";
  if (!c.health_checks) {
    // The first connection to p fails before any data: p becomes unavailable, the client goes
    // to the spare (which speaks first, so the client has sent nothing to p), and p is probed.
    node.close_next(1);
    toml += "[[cluster.node]]\nname = \"spare\"\naddress = \"" + spare.address() + "\"\ntier = 2\n";
  }
  TempDir dir;
  auto balancer = start_daemon(dir, toml);
  const std::string address = balancer->address("l");
  if (!c.health_checks) {
    Client first(address);
    EXPECT_EQ(first.recv_line(), "spare");
  }
  // Probe: one connection. Checks: three, so that the second one's verdict is in.
  const std::size_t wanted = c.health_checks ? 3 : 1;
  auto seen = wait_seen(node, wanted);
  ASSERT_GE(seen.size(), wanted) << balancer->process().output();
  for (const auto& s : seen) {
    EXPECT_TRUE(s.valid);
    EXPECT_TRUE(s.local);
    EXPECT_EQ(s.header, local);
  }
  // Up (probed back, or passing its checks): a client now reaches p, with its own header. (The
  // probe's verdict may land a moment after p read the header: until then the spare answers.)
  Client client;
  ASSERT_TRUE(eventually(
      [&] {
        client = Client(address);
        return client.send_all("hello") && client.recv_exact(5, in(5s)) == "hello";
      },
      in(15s)))
      << balancer->process().output();
  const auto served = [&] {
    for (const auto& s : node.seen()) {
      if (!s.local) return true;
    }
    return false;
  };
  ASSERT_TRUE(eventually(served, in(10s)));
  for (const auto& s : node.seen()) {
    EXPECT_TRUE(s.valid);
    if (!s.local) expect_header(s, version, client_endpoint(client, address), endpoint_of(address));
  }
}

INSTANTIATE_TEST_SUITE_P(Sources, LocalHeader,
                         ::testing::Values(LocalCase{"V1Probe", "v1", false},
                                           LocalCase{"V2Probe", "v2", false},
                                           LocalCase{"V1HealthCheck", "v1", true},
                                           LocalCase{"V2HealthCheck", "v2", true}),
                         [](const auto& test) { return std::string(test.param.name); });

// ---- Header in and header out together ----

struct InCase {
  const char* name;
  std::string header;  // what the client sends first
  bool local;          // the header says "use the connection's own addresses"
  tcp::endpoint source;
  tcp::endpoint destination;
};

const tcp::endpoint kClient4{asio::ip::make_address("203.0.113.7"), 5555};
const tcp::endpoint kListener4{asio::ip::make_address("198.51.100.2"), 80};
const tcp::endpoint kClient6{asio::ip::make_address("2001:db8::7"), 40000};
const tcp::endpoint kListener6{asio::ip::make_address("2001:db8::2"), 443};

std::vector<InCase> in_cases() {
  return {
      {"V1Tcp4", "PROXY TCP4 203.0.113.7 198.51.100.2 5555 80\r\n", false, kClient4, kListener4},
      {"V1Tcp6", "PROXY TCP6 2001:db8::7 2001:db8::2 40000 443\r\n", false, kClient6, kListener6},
      {"V1Unknown", "PROXY UNKNOWN\r\n", true, {}, {}},
      // The longest line a receiver takes: 107 bytes with the CRLF (what follows UNKNOWN is
      // ignored).
      {"V1UnknownOf107Bytes", "PROXY UNKNOWN" + std::string(92, ' ') + "\r\n", true, {}, {}},
      {"V2Tcp4", proxy_bytes::v2_proxy(kClient4, kListener4), false, kClient4, kListener4},
      {"V2Tcp6", proxy_bytes::v2_proxy(kClient6, kListener6), false, kClient6, kListener6},
      {"V2Local", proxy_bytes::v2_local(), true, {}, {}},
  };
}

// The largest header a receiver takes: 4 KiB in all (16 + 12 address bytes + a NOOP TLV).
InCase largest_v2() {
  const std::string padding(4096 - 16 - 12 - 3, 'x');
  return {"V2Of4KiB", proxy_bytes::v2_proxy(kClient4, kListener4, proxy_bytes::tlv(0x04, padding)),
          false, kClient4, kListener4};
}

class HeaderInAndOut : public ::testing::TestWithParam<std::tuple<InCase, bool>> {};

TEST_P(HeaderInAndOut, TheDecodedClientIsWhatTheNodeSees) {
  // Verifies header in + header out through the daemon: a v1 or v2 header in (whole, or one
  // byte per segment) names the client, and a v1 node and a v2 node see that client and its
  // destination, then exactly the client's bytes. A LOCAL / UNKNOWN header in means the
  // connection's own addresses: the nodes see the real client and listener.
  const auto& [c, byte_at_a_time] = GetParam();
  ProxyBackend node_v1;
  ProxyBackend node_v2;
  std::string toml;
  for (const auto& [version, node] : {std::pair{"v1", &node_v1}, std::pair{"v2", &node_v2}}) {
    toml += std::string("[[listener]]\nname = \"to_") + version +
            "\"\nlisten = \"127.0.0.1:0\"\ncluster = \"" + version +
            "\"\naccept_proxy = true\ntrusted_proxies = [\"127.0.0.0/8\"]\n";
    toml += std::string("[[cluster]]\nname = \"") + version + "\"\nproxy_protocol = \"" + version +
            "\"\n[[cluster.node]]\nname = \"n\"\naddress = \"" + node->address() + "\"\n";
  }
  TempDir dir;
  auto balancer = start_daemon(dir, toml);
  for (const auto& [version, node] : {std::pair{"v1", &node_v1}, std::pair{"v2", &node_v2}}) {
    SCOPED_TRACE(version);
    const std::string address = balancer->address(std::string("to_") + version);
    Client client(address);
    ASSERT_TRUE(client.connected()) << client.error();
    ASSERT_TRUE(byte_at_a_time ? send_byte_at_a_time(client, c.header) : client.send_all(c.header));
    const std::string payload = random_bytes(20000, 3);
    ASSERT_TRUE(client.send_all(payload));
    EXPECT_EQ(sha256_hex(client.recv_exact(payload.size())), sha256_hex(payload));
    const auto seen = wait_seen(*node, 1);
    ASSERT_EQ(seen.size(), 1U);
    if (c.local) {
      expect_header(seen[0], version, client_endpoint(client, address), endpoint_of(address));
    } else {
      expect_header(seen[0], version, c.source, c.destination);
    }
  }
}

std::string in_case_name(const ::testing::TestParamInfo<std::tuple<InCase, bool>>& info) {
  return std::string(std::get<0>(info.param).name) +
         (std::get<1>(info.param) ? "ByteAtATime" : "Whole");
}

INSTANTIATE_TEST_SUITE_P(Headers, HeaderInAndOut,
                         ::testing::Combine(::testing::ValuesIn(in_cases()), ::testing::Bool()),
                         in_case_name);
// 4 KiB one byte per segment would take seconds for nothing more: whole only.
INSTANTIATE_TEST_SUITE_P(Largest, HeaderInAndOut,
                         ::testing::Combine(::testing::Values(largest_v2()), ::testing::Values(false)),
                         in_case_name);

// ---- Other paths ----

TEST(ProxyProtocol, V1OutNamesAnIpv6ClientAndAnUntrustedSourceIsRefused) {
  // Verifies v1 out for an IPv6 client (TCP6, the client's own address and port), and on a
  // second listener with trusted_proxies that excludes loopback, that a client is closed at
  // once without a node being contacted.
  ProxyBackend node("::1");
  Backend untouched("u");
  TempDir dir;
  auto balancer = start_daemon(dir, R"([[listener]]
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
  auto balancer = start_daemon(dir, before);
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
