// End-to-end tests of the listener guards: the real protobalance binary, real backends and
// clients on loopback, clients from distinct sources (127.0.0.x bound before connecting, ::1,
// and IPv4-mapped addresses named by a PROXY header). Counts are read from /metrics.
#include <signal.h>

#include <fstream>
#include <iterator>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "protobalance/net/proxy_protocol.hpp"
#include "support/backend.hpp"
#include "support/client.hpp"
#include "support/process.hpp"
#include "support/proxy_backend.hpp"
#include "support/scrape.hpp"
#include "support/tls_hello.hpp"

namespace pb::test {
namespace {

using namespace std::chrono_literals;

// A daemon whose config is `listener_keys` appended to one [[listener]] "l" on `listen` with
// cluster "c" (one echo node), then `extra` (more clusters, tables of the listener), with the
// exporter on.
class Guarded {
 public:
  Guarded(const std::string& listener_keys, const std::string& extra = "",
          const std::string& listen = "127.0.0.1:0", std::string node_address = "")
      : node_("n") {
    if (node_address.empty()) node_address = node_.address();
    text_ = R"([metrics]
listen = "127.0.0.1:0"
[[cluster]]
name = "c"
[[cluster.node]]
name = "n"
address = ")" + node_address + R"("
[[listener]]
name = "l"
listen = ")" + listen + "\"\ncluster = \"c\"\n" + listener_keys + extra;
    file_ = dir_.write("pb.toml", text_);
    balancer_ = std::make_unique<Balancer>(std::vector<std::string>{"--config", file_.string()});
    metrics_ = metrics_address(*balancer_);
  }

  std::string address() const { return balancer_->address("l"); }
  Backend& node() { return node_; }
  Balancer& balancer() { return *balancer_; }
  const TempDir& dir() const { return dir_; }

  // Rewrites the file with `listener_keys` replacing `before`, and reloads.
  void reload_replacing(const std::string& before, const std::string& after) {
    const auto at = text_.find(before);
    ASSERT_NE(at, std::string::npos);
    text_.replace(at, before.size(), after);
    dir_.write("pb.toml", text_);
    balancer_->process().signal(SIGHUP);
    ASSERT_TRUE(balancer_->process().wait_for(std::regex("guards changed"), in(10s)));
  }

  // listener_rejected_total{listener="l",reason=REASON}, once it stops changing within a short
  // look (a refused connection is counted by the daemon around the time the client sees the
  // close); -1 when unreadable.
  double rejected(const std::string& reason) {
    const std::string series =
        R"(protobalance_listener_rejected_total{listener="l",reason=")" + reason + "\"}";
    const auto body = http_get(metrics_, "/metrics");
    return body ? Scrape(*body)(series) : -1;
  }
  // Waits until the counter of `reason` is `expected`.
  bool rejected_reaches(const std::string& reason, double expected) {
    return eventually([&] { return rejected(reason) == expected; }, in(10s));
  }
  double active() {
    const auto body = http_get(metrics_, "/metrics");
    return body ? Scrape(*body)(R"(protobalance_listener_connections_active{listener="l"})") : -1;
  }

 private:
  Backend node_;
  TempDir dir_;
  std::string text_;
  std::filesystem::path file_;
  std::unique_ptr<Balancer> balancer_;
  std::string metrics_;
};

// A connection from `source` that is served end to end: its bytes come back from the echo node.
bool served(const std::string& address, const std::string& source, const std::string& payload = "ping") {
  Client client(address, 5s, source);
  if (!client.connected()) return false;
  return client.send_all(payload) && client.recv_exact(payload.size(), in(5s)) == payload;
}

// A connection from `source` that the balancer closes without serving it.
bool refused(const std::string& address, const std::string& source) {
  Client client(address, 5s, source);
  if (!client.connected()) return false;
  client.send_all("ping");
  return client.wait_closed(in(5s)) != PeerClose::timeout;
}

TEST(Guard, AllowAndDenyIpv4Sources) {
  // Verifies allow/deny on IPv4 sources: inside allow served, the denied address and one
  // outside allow closed at once without reaching the node, each counted as `denied`.
  Guarded g(R"(allow = ["127.0.0.0/29"]
deny = ["127.0.0.3"]
)");
  EXPECT_TRUE(served(g.address(), "127.0.0.2"));
  EXPECT_TRUE(refused(g.address(), "127.0.0.3"));
  EXPECT_TRUE(refused(g.address(), "127.0.0.9"));
  EXPECT_TRUE(served(g.address(), "127.0.0.4"));
  EXPECT_TRUE(g.rejected_reaches("denied", 2));
  EXPECT_EQ(g.node().accepted(), 2);
}

TEST(Guard, AllowAndDenyIpv6AndIpv4MappedSources) {
  // Verifies an IPv6 listener (::1 allowed) and, through PROXY headers that name IPv6 and
  // IPv4-mapped clients, that the decoded client is checked: ::ffff:192.0.2.66 is the denied
  // 192.0.2.66, ::ffff:192.0.2.1 is inside the allowed 192.0.2.0/24, 2001:db8::1 is outside.
  Guarded v6(R"(allow = ["::1"]
)", "", "[::1]:0");
  EXPECT_TRUE(served(v6.address(), "::1"));

  Guarded g(R"(accept_proxy = true
trusted_proxies = ["127.0.0.0/8"]
allow = ["192.0.2.0/24", "2001:db8:1::/48"]
deny = ["192.0.2.66"]
)");
  const auto via_proxy = [&](const std::string& header) {
    Client client(g.address(), 5s);
    if (!client.send_all(header + "ping")) return std::string("unsent");
    return client.recv_exact(4, in(5s));
  };
  EXPECT_EQ(via_proxy("PROXY TCP6 ::ffff:192.0.2.1 ::1 5555 80\r\n"), "ping");
  EXPECT_EQ(via_proxy("PROXY TCP6 2001:db8:1::7 ::1 5555 80\r\n"), "ping");
  EXPECT_EQ(via_proxy("PROXY TCP6 ::ffff:192.0.2.66 ::1 5555 80\r\n"), "");
  EXPECT_EQ(via_proxy("PROXY TCP4 192.0.2.66 127.0.0.1 5555 80\r\n"), "");
  EXPECT_EQ(via_proxy("PROXY TCP6 2001:db8::1 ::1 5555 80\r\n"), "");
  EXPECT_TRUE(g.rejected_reaches("denied", 3));
  EXPECT_EQ(g.node().accepted(), 2);
}

TEST(Guard, ConcurrentConnectionsPerClient) {
  // Verifies max_client_connections: a client's third concurrent connection is refused as
  // client_limit while another client is served; once one closes, the client is served again.
  Guarded g("max_client_connections = 2\n");
  Client first(g.address(), 5s, "127.0.0.2");
  Client second(g.address(), 5s, "127.0.0.2");
  for (Client* c : {&first, &second}) {
    ASSERT_TRUE(c->send_all("hi"));
    ASSERT_EQ(c->recv_exact(2, in(5s)), "hi");
  }
  EXPECT_TRUE(refused(g.address(), "127.0.0.2"));
  EXPECT_TRUE(served(g.address(), "127.0.0.5"));
  EXPECT_TRUE(g.rejected_reaches("client_limit", 1));
  first.close();
  ASSERT_TRUE(eventually([&] { return g.active() == 1; }, in(10s)));
  EXPECT_TRUE(served(g.address(), "127.0.0.2"));
  EXPECT_EQ(g.rejected("client_limit"), 1);
}

TEST(Guard, RatePerClientCountedOverAWindow) {
  // Verifies max_client_rate = "5/1h": of 8 connections in a row from one client exactly 5
  // are served (the burst; the next token is 12 minutes away) and 3 refused as client_rate;
  // another client has its own bucket.
  Guarded g("max_client_rate = \"5/1h\"\n");
  int ok = 0;
  int closed = 0;
  for (int i = 0; i < 8; ++i) {
    Client client(g.address(), 5s, "127.0.0.2");
    ASSERT_TRUE(client.connected()) << client.error();
    client.send_all("x");  // may fail: a refused client can be closed already
    const std::string back = client.recv_exact(1, in(5s));
    (back == "x" ? ok : closed) += 1;
  }
  EXPECT_EQ(ok, 5);
  EXPECT_EQ(closed, 3);
  EXPECT_TRUE(served(g.address(), "127.0.0.3"));
  EXPECT_TRUE(g.rejected_reaches("client_rate", 3));
  EXPECT_EQ(g.node().accepted(), 6);
}

TEST(Guard, ReloadChangesAccessListsWithoutDroppingRunningConnections) {
  // Verifies that a reload applies a new deny list to new connections only: a running
  // connection of the newly denied client goes on, its new ones are refused.
  Guarded g("allow = [\"127.0.0.0/8\"]\n");
  Client running(g.address(), 5s, "127.0.0.2");
  ASSERT_TRUE(running.send_all("one"));
  ASSERT_EQ(running.recv_exact(3, in(5s)), "one");
  g.reload_replacing("allow = [\"127.0.0.0/8\"]\n",
                     "allow = [\"127.0.0.0/8\"]\ndeny = [\"127.0.0.2\"]\n");
  EXPECT_TRUE(refused(g.address(), "127.0.0.2"));
  EXPECT_TRUE(served(g.address(), "127.0.0.3"));
  ASSERT_TRUE(running.send_all("two"));
  EXPECT_EQ(running.recv_exact(3, in(5s)), "two");
  EXPECT_TRUE(g.rejected_reaches("denied", 1));
}

constexpr const char* kValidateHttp = R"(
[listener.validate]
timeout = "500ms"
max_bytes = 32
expect = '^(GET|HEAD|POST) /'
)";

TEST(Guard, ValidationForwardsMatchingFirstBytesUntouched) {
  // Verifies that first bytes that match are forwarded to the node byte for byte (the node
  // echoes them back whole), also when they arrive one byte at a time.
  Guarded g("", kValidateHttp);
  EXPECT_TRUE(served(g.address(), "127.0.0.2", "GET /index.html HTTP/1.0\r\n\r\n"));
  Client slow(g.address(), 5s);
  const std::string request = "POST /form HTTP/1.1\r\n";
  for (char c : request) {
    ASSERT_TRUE(slow.send_all(std::string(1, c)));
    std::this_thread::sleep_for(2ms);  // pacing, so that the bytes arrive one by one
  }
  EXPECT_EQ(slow.recv_exact(request.size(), in(5s)), request);
  EXPECT_EQ(g.rejected("validation"), 0);
}

TEST(Guard, ValidationClosesMismatchingAndSilentClients) {
  // Verifies that a client whose first bytes cannot match, one that sends max_bytes without a
  // match, and one that stays silent past the timeout are closed without a node being
  // contacted, each counted as `validation`.
  Guarded g("", R"(
[listener.validate]
timeout = "500ms"
max_bytes = 8
expect = '^(GET|HEAD|POST) /|^x{9}'
)");
  {
    Client ssh(g.address(), 5s);
    ASSERT_TRUE(ssh.send_all("SSH-2.0-OpenSSH_9.0\r\n"));
    EXPECT_NE(ssh.wait_closed(in(5s)), PeerClose::timeout);
  }
  {
    Client long_prefix(g.address(), 5s);
    ASSERT_TRUE(long_prefix.send_all("xxxxxxxxxx"));
    EXPECT_NE(long_prefix.wait_closed(in(5s)), PeerClose::timeout);
  }
  {
    Client silent(g.address(), 5s);
    ASSERT_TRUE(silent.connected());
    EXPECT_NE(silent.wait_closed(in(10s)), PeerClose::timeout);
  }
  EXPECT_TRUE(g.rejected_reaches("validation", 3));
  EXPECT_EQ(g.node().accepted(), 0);
}

std::string as_text(const std::vector<std::uint8_t>& bytes) {
  return std::string(bytes.begin(), bytes.end());
}

// Sends `hello` in two segments and returns what comes back from the echo node it reached
// (empty when the connection was closed).
std::string hello_round_trip(const std::string& address, const std::string& hello) {
  Client client(address, 5s);
  const std::size_t half = hello.size() / 2;
  if (!client.send_all(hello.substr(0, half))) return "unsent";
  std::this_thread::sleep_for(20ms);  // pacing, so that the ClientHello spans two segments
  if (!client.send_all(hello.substr(half))) return "unsent";
  return client.recv_exact(hello.size(), in(5s));
}

TEST(Guard, SniRoutesRealClientHellosByteIdentical) {
  // Verifies SNI routing with real ClientHellos (OpenSSL), each read across two segments: an
  // exact name and a one-label wildcard go to "api", another route's name to "web", no SNI and
  // an unmatched name to the listener's cluster; each arrives at its node byte-identical (the
  // node echoes it back). Garbage is closed as `tls`. The access log records the server name.
  Backend api("api");
  Backend web("web");
  Guarded g("", R"(
[[listener.route]]
sni = ["api.example.com", "*.api.example.com"]
cluster = "api"
[[listener.route]]
sni = ["www.example.com"]
cluster = "web"
[[cluster]]
name = "api"
[[cluster.node]]
name = "a"
address = ")" + api.address() + R"("
[[cluster]]
name = "web"
[[cluster.node]]
name = "w"
address = ")" + web.address() + R"("
[access_log]
enabled = true
path = "access.log"
)");
  for (const std::string name : {"api.example.com", "v2.API.example.com", "www.example.com", "",
                                 "other.example.org"}) {
    const std::string hello = as_text(real_client_hello(name));
    ASSERT_FALSE(hello.empty());
    EXPECT_EQ(hello_round_trip(g.address(), hello), hello) << name;
  }
  EXPECT_EQ(api.accepted(), 2);
  EXPECT_EQ(web.accepted(), 1);
  EXPECT_EQ(g.node().accepted(), 2);

  Client garbage(g.address(), 5s);
  ASSERT_TRUE(garbage.send_all("GET / HTTP/1.0\r\n\r\n"));
  EXPECT_NE(garbage.wait_closed(in(5s)), PeerClose::timeout);
  EXPECT_TRUE(g.rejected_reaches("tls", 1));
  EXPECT_EQ(api.accepted() + web.accepted() + g.node().accepted(), 5);

  const auto log = g.dir().path() / "var" / "access.log";
  EXPECT_TRUE(eventually(
      [&] {
        std::ifstream in(log);
        const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
        return text.find("cluster=api node=a") != std::string::npos &&
               text.find("sni=v2.API.example.com") != std::string::npos;
      },
      in(10s)))
      << "no access log line with the server name in " << log;
}

TEST(Guard, SniNameGoesInTheProxyV2AuthorityTlv) {
  // Verifies that with a v2 PROXY header out the server name, as the client sent it, is in the
  // AUTHORITY TLV, and the ClientHello follows the header untouched.
  ProxyBackend node;
  Guarded g("", R"(
[[listener.route]]
sni = ["*"]
cluster = "p"
[[cluster]]
name = "p"
proxy_protocol = "v2"
[[cluster.node]]
name = "pn"
address = ")" + node.address() + "\"\n");
  const std::string hello = as_text(real_client_hello("Secure.Example.net"));
  ASSERT_FALSE(hello.empty());
  EXPECT_EQ(hello_round_trip(g.address(), hello), hello);
  const auto seen = node.seen();
  ASSERT_EQ(seen.size(), 1U);
  EXPECT_TRUE(seen[0].valid);
  EXPECT_EQ(seen[0].authority, "Secure.Example.net");
}

}  // namespace
}  // namespace pb::test
