// End-to-end tests of the PROXY protocol in: the real protobalance binary behind a client that
// plays the balancer in front. Headers that must be refused (no node contacted, each refusal
// counted), and the decoded client being the client for hash, affinity and the access log.
#include <algorithm>
#include <fstream>
#include <iterator>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include <gtest/gtest.h>

#include "support/backend.hpp"
#include "support/client.hpp"
#include "support/eventually.hpp"
#include "support/load.hpp"
#include "support/process.hpp"
#include "support/proxy_header_bytes.hpp"

namespace pb::test {
namespace {

using namespace std::chrono_literals;
namespace asio = boost::asio;
using asio::ip::tcp;

// ---- Refused headers ----

// Which listener a case connects to.
enum class Listener {
  strict,   // trusts loopback, proxy_timeout = 30s (so "at once" is far from the timeout)
  late,     // trusts loopback, proxy_timeout = 1s
  guarded,  // trusts 10.0.0.0/8 only: loopback clients are untrusted
};

struct RefusedCase {
  const char* name;
  Listener listener;
  std::string bytes;        // what the client sends (may be empty)
  bool half_close = false;  // the client then shuts its sending side
  bool at_timeout = false;  // closed at proxy_timeout, not at once
  bool trickle = false;     // `bytes` go one per 50 ms: slower than proxy_timeout allows
};

std::vector<RefusedCase> refused_cases() {
  const std::string v2_tcp4_body(12, '\1');
  return {
      {"NotAHeader", Listener::strict, "GET / HTTP/1.0\r\n\r\n"},
      {"V1PortOutOfRange", Listener::strict, "PROXY TCP4 203.0.113.7 198.51.100.2 65536 80\r\n"},
      {"V1WrongFamily", Listener::strict, "PROXY TCP4 2001:db8::7 198.51.100.2 5555 80\r\n"},
      // 108 bytes and still no CRLF: over the 107 of the longest v1 line (what follows
      // UNKNOWN is not parsed, so only the length can refuse it).
      {"V1Oversized", Listener::strict, "PROXY UNKNOWN" + std::string(95, 'x')},
      {"V2BadCommand", Listener::strict, proxy_bytes::v2(0x22, proxy_bytes::kTcp4, v2_tcp4_body)},
      {"V2BadVersion", Listener::strict, proxy_bytes::v2(0x11, proxy_bytes::kTcp4, v2_tcp4_body)},
      {"V2ShortAddresses", Listener::strict, proxy_bytes::v2(proxy_bytes::kProxy, proxy_bytes::kTcp4, "\1\2\3")},
      // Announces 4081 bytes after the fixed 16: 4097 in all, over 4 KiB. The announcement alone
      // refuses it; the client sends some of the body too, as a real one would.
      {"V2Oversized", Listener::strict,
       proxy_bytes::kV2Signature + "\x21\x11\x0f\xf1" + std::string(1000, 'x')},
      {"ClosedWithinTheHeader", Listener::strict, "PROXY TCP4 203.0", true},
      {"Untrusted", Listener::guarded, "PROXY TCP4 203.0.113.7 198.51.100.2 5555 80\r\n"},
      {"UntrustedSilent", Listener::guarded, ""},
      {"LatePartial", Listener::late, "PROXY TCP4 203.0.113.7 ", false, true},
      {"LateSilent", Listener::late, "", false, true},
      // Every byte comes well within the timeout, the header does not: the timeout is the
      // header's, not each read's.
      {"LateTrickle", Listener::late, "PROXY TCP4 203.0.113.7 198.51.100.2 5555 80\r\n", false,
       true, true},
  };
}

std::string listener_name(Listener l) {
  switch (l) {
    case Listener::strict: return "strict";
    case Listener::late: return "late";
    case Listener::guarded: return "guarded";
  }
  return "";
}

// The three listeners above, all to cluster "c" of one node, and the Prometheus exporter.
std::string refusing_config(const std::string& node) {
  return R"([metrics]
listen = "127.0.0.1:0"
[[listener]]
name = "strict"
listen = "127.0.0.1:0"
cluster = "c"
accept_proxy = true
trusted_proxies = ["127.0.0.0/8"]
proxy_timeout = "30s"
[[listener]]
name = "late"
listen = "127.0.0.1:0"
cluster = "c"
accept_proxy = true
trusted_proxies = ["127.0.0.0/8"]
proxy_timeout = "1s"
[[listener]]
name = "guarded"
listen = "127.0.0.1:0"
cluster = "c"
accept_proxy = true
trusted_proxies = ["10.0.0.0/8"]
proxy_timeout = "30s"
[[cluster]]
name = "c"
[[cluster.node]]
name = "n"
address = ")" + node + "\"\n";
}

std::optional<double> rejected(const std::string& exporter, const std::string& listener) {
  const auto body = http_get_body(exporter, "/metrics");
  if (!body) return std::nullopt;
  return metric_value(*body, "protobalance_listener_rejected_total{listener=\"" + listener +
                                 "\",reason=\"proxy\"}");
}

class RefusedHeader : public ::testing::TestWithParam<RefusedCase> {};

TEST_P(RefusedHeader, ClosesWithoutContactingANodeAndIsCounted) {
  // Verifies that a malformed, oversized, incomplete, late or untrusted header closes the
  // connection (at once, or at proxy_timeout for a late one) without any node being
  // contacted, and that each such connection is counted once in
  // protobalance_listener_rejected_total{reason="proxy"} of its listener.
  const RefusedCase& c = GetParam();
  constexpr int kClients = 2;
  Backend node("n");
  TempDir dir;
  auto balancer = start_daemon(dir, refusing_config(node.address()));
  const std::string exporter = balancer->metrics_address();
  ASSERT_FALSE(exporter.empty()) << balancer->process().output();
  const std::string listener = listener_name(c.listener);

  std::vector<Client> clients;
  const auto started = std::chrono::steady_clock::now();
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back(balancer->address(listener));
    ASSERT_TRUE(clients.back().connected()) << clients.back().error();
    // A refused client may be closed while it still sends: what got through is enough.
    if (!c.bytes.empty() && !c.trickle) clients.back().send_all(c.bytes, in(5s));
    if (c.half_close) clients.back().shutdown_write();
  }
  if (c.trickle) {
    std::vector<bool> closed(clients.size(), false);
    for (char byte : c.bytes) {
      for (std::size_t i = 0; i < clients.size(); ++i) {
        if (closed[i]) continue;
        clients[i].send_all(std::string_view(&byte, 1), in(1s));
        // The pacing between bytes is this wait for the close.
        closed[i] = clients[i].wait_closed(in(50ms)) != PeerClose::timeout;
      }
    }
  }
  for (auto& client : clients) {
    EXPECT_NE(client.wait_closed(in(15s)), PeerClose::timeout) << "not closed";
  }
  const auto elapsed = std::chrono::steady_clock::now() - started;
  if (c.at_timeout) {
    EXPECT_GE(elapsed, 1s) << "closed before proxy_timeout";
  } else {
    EXPECT_LT(elapsed, 15s) << "not closed at once (proxy_timeout is 30 s)";
  }
  EXPECT_TRUE(eventually([&] { return rejected(exporter, listener) == kClients; }, in(10s)))
      << "counted: " << rejected(exporter, listener).value_or(-1);
  EXPECT_EQ(node.accepted(), 0);
  // Nothing was counted for the other listeners.
  for (Listener other : {Listener::strict, Listener::late, Listener::guarded}) {
    if (other != c.listener) {
      EXPECT_EQ(rejected(exporter, listener_name(other)).value_or(0), 0);
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Headers, RefusedHeader, ::testing::ValuesIn(refused_cases()),
                         [](const auto& test) { return std::string(test.param.name); });

// ---- The decoded client is the client ----

// The header a proxy in front sends for a client at `address` (port `port`).
std::string header_for(const std::string& address, std::uint16_t port) {
  return "PROXY TCP4 " + address + " 127.0.0.1 " + std::to_string(port) + " 80\r\n";
}

// Connects (from `source` when not empty), sends `header` when not empty, and returns the name
// the node greets with ("" when none came).
std::string served_by(const std::string& listener, const std::string& header,
                      const std::string& source = "") {
  Client client(listener, 5s, source);
  if (!client.connected()) return "";
  if (!header.empty() && !client.send_all(header)) return "";
  const std::string line = client.recv_line(in(10s));  // without its '\n'
  client.shutdown_write();
  client.wait_closed(in(10s));
  return line;
}

TEST(ProxyProtocolIn, HashChoosesByTheDecodedAddress) {
  // Verifies that the hash algorithm keys on the client a header names, not on the proxy that
  // sent it: each of twelve clients goes, through one proxy source (127.0.0.1) and a header
  // naming it, to the node it reaches when it connects directly from its own address.
  std::vector<std::unique_ptr<Backend>> nodes;
  std::string node_tables;
  for (const char* name : {"a", "b", "c", "d"}) {
    nodes.push_back(std::make_unique<Backend>(name, BackendMode::greet_echo));
    node_tables += std::string("[[cluster.node]]\nname = \"") + name + "\"\naddress = \"" +
                   nodes.back()->address() + "\"\n";
  }
  TempDir dir;
  auto balancer = start_daemon(dir, R"([[listener]]
name = "direct"
listen = "127.0.0.1:0"
cluster = "c"
[[listener]]
name = "proxied"
listen = "127.0.0.1:0"
cluster = "c"
accept_proxy = true
trusted_proxies = ["127.0.0.1/32"]
[[cluster]]
name = "c"
algorithm = "hash"
hash_key = "000102030405060708090a0b0c0d0e0f"
)" + node_tables);
  std::set<std::string> used;
  for (int k = 2; k < 14; ++k) {
    const std::string client = "127.0.0." + std::to_string(k);
    SCOPED_TRACE(client);
    const std::string direct = served_by(balancer->address("direct"), "", client);
    ASSERT_FALSE(direct.empty());
    used.insert(direct);
    EXPECT_EQ(served_by(balancer->address("proxied"), header_for(client, 40000)), direct);
  }
  // Twelve clients on one node would not tell the decoded address from the proxy's.
  EXPECT_GE(used.size(), 2U);
}

TEST(ProxyProtocolIn, AffinityAccessLogAndPbadminShowTheDecodedAddress) {
  // Verifies that affinity keys on the decoded client: two clients behind one proxy source,
  // in the order A B B A A B under round robin, each always reach the node of their first
  // connection; `pbadmin affinity list` lists the two decoded addresses with those nodes (and
  // not the proxy's), and the access log names the decoded client and port on every line.
  Backend a("a", BackendMode::greet_echo);
  Backend b("b", BackendMode::greet_echo);
  TempDir dir;
  const std::string toml = R"([service]
threads = 1
state_dir = "state"
[access_log]
enabled = true
path = "access.log"
[[listener]]
name = "proxied"
listen = "127.0.0.1:0"
cluster = "c"
accept_proxy = true
trusted_proxies = ["127.0.0.0/8"]
[[cluster]]
name = "c"
algorithm = "round_robin"
[cluster.affinity]
enabled = true
[[cluster.node]]
name = "a"
address = ")" + a.address() + R"("
[[cluster.node]]
name = "b"
address = ")" + b.address() + "\"\n";
  auto balancer = start_daemon(dir, toml);
  const std::map<char, std::string> clients{{'A', "198.51.100.10"}, {'B', "198.51.100.20"}};
  std::map<char, std::string> node_of;
  std::uint16_t port = 41000;
  for (char who : std::string("ABBAAB")) {
    SCOPED_TRACE(std::string(1, who));
    const std::string node = served_by(balancer->address("proxied"), header_for(clients.at(who), port++));
    ASSERT_FALSE(node.empty());
    if (!node_of.count(who)) node_of[who] = node;
    EXPECT_EQ(node, node_of[who]);
  }
  EXPECT_NE(node_of['A'], node_of['B']) << "round robin gave the second client the other node";

  // pbadmin reads the database, written behind: wait until both entries are there.
  const std::string config = (dir.path() / "pb.toml").string();
  std::string listing;
  const auto listed = [&] {
    listing = run({binary("pbadmin"), "--config", config, "affinity", "list"}, in(20s)).output;
    for (const auto& [who, address] : clients) {
      const std::regex row("(^|\\n)" + std::regex_replace(address, std::regex("\\."), "\\.") +
                           "\\s+c\\s+" + node_of[who] + "\\s");
      if (!std::regex_search(listing, row)) return false;
    }
    return true;
  };
  EXPECT_TRUE(eventually(listed, in(20s))) << listing;
  EXPECT_EQ(listing.find("127.0.0.1"), std::string::npos) << listing;

  const auto log_file = dir.path() / "state" / "access.log";
  std::string log;
  const auto logged = [&] {
    std::ifstream in(log_file);
    log.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    return std::count(log.begin(), log.end(), '\n') >= 6;
  };
  ASSERT_TRUE(eventually(logged, in(10s))) << log;
  std::uint16_t expected_port = 41000;
  std::istringstream lines(log);
  std::string line;
  for (char who : std::string("ABBAAB")) {
    ASSERT_TRUE(std::getline(lines, line));
    EXPECT_NE(line.find("client=" + clients.at(who) + ":" + std::to_string(expected_port++) +
                        " listener=proxied cluster=c node=" + node_of[who] + " "),
              std::string::npos)
        << line;
  }
}

}  // namespace
}  // namespace pb::test
