// End-to-end tests of quick mode's balance syntax (issue 15): the real protobalance binary,
// started with a one-line cluster, and real greeting backends on loopback. Each backend sends
// "<name>\n" first, so a client learns which node served it by reading one line.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support/backend.hpp"
#include "support/client.hpp"
#include "support/process.hpp"

namespace pb::test {
namespace {

using Tally = std::map<std::string, int>;
constexpr auto kGreet = BackendMode::greet_echo;

// "127.0.0.1:PORT" plus balance fields, e.g. with_fields(a, ":2") = "127.0.0.1:PORT:2".
std::string with_fields(const Backend& backend, const std::string& fields) {
  return backend.address() + fields;
}

// A quick-mode balancer on 127.0.0.1:0, one worker thread (deterministic choices).
std::unique_ptr<Balancer> start_quick(std::vector<std::string> line,
                                      std::vector<std::string> options = {}) {
  std::vector<std::string> args{"--listen", "127.0.0.1:0", "--threads", "1"};
  args.insert(args.end(), options.begin(), options.end());
  args.insert(args.end(), line.begin(), line.end());
  return std::make_unique<Balancer>(args);
}

std::string served_by(const std::string& address, const std::string& source = "") {
  Client client(address, 5s, source);
  if (!client.connected()) return "";
  return client.recv_line(in(5s));
}

struct Held {
  Client client;
  std::string node;
};

Held hold(const std::string& address) {
  Held held{Client(address, 5s), ""};
  if (held.client.connected()) held.node = held.client.recv_line(in(5s));
  return held;
}

Tally tally(const std::vector<Held>& held) {
  Tally out;
  for (const auto& h : held) ++out[h.node];
  return out;
}

TEST(QuickMode, GroupsAreTiersAndFullNodesOverflowToTheNextGroup) {
  // Verifies the seed's `alpha::2 ! beta::1 ! failover`: alpha takes connections until it
  // holds 2, then beta until it holds 1, then failover; a slot freed on alpha is used again.
  Backend alpha("alpha", kGreet);
  Backend beta("beta", kGreet);
  Backend failover("failover", kGreet);
  auto balancer = start_quick(
      {with_fields(alpha, ":2"), "!", with_fields(beta, ":1"), "!", failover.address()});
  std::vector<Held> held;
  for (int i = 0; i < 5; ++i) held.push_back(hold(balancer->address()));
  EXPECT_EQ(tally(held), (Tally{{"alpha", 2}, {"beta", 1}, {"failover", 2}}));
  EXPECT_EQ(alpha.open_connections(), 2);
  EXPECT_EQ(beta.open_connections(), 1);

  // Free one of alpha's slots: the next client goes back to tier 1, polled with a deadline
  // because the slot is released when the relay has ended on the balancer's side.
  auto on_alpha =
      std::find_if(held.begin(), held.end(), [](const Held& h) { return h.node == "alpha"; });
  ASSERT_NE(on_alpha, held.end());
  on_alpha->client.shutdown_write();
  EXPECT_EQ(on_alpha->client.wait_closed(in(5s)), PeerClose::eof);
  on_alpha->client.close();
  const auto deadline = in(5s);
  std::string last;
  while (std::chrono::steady_clock::now() < deadline) {
    Held probe = hold(balancer->address());
    last = probe.node;
    if (last == "alpha") {
      held.push_back(std::move(probe));
      break;
    }
    std::this_thread::sleep_for(10ms);  // polling interval, bounded by the deadline
  }
  EXPECT_EQ(last, "alpha") << "a freed slot on alpha was not used again";
}

TEST(QuickMode, NodesOfOneGroupShareByLoadFactor) {
  // Verifies HOST:PORT::LOAD_FACTOR (empty max_connections field) inside one group: round robin
  // gives a:b = 1:3.
  Backend a("a", kGreet);
  Backend b("b", kGreet);
  auto balancer = start_quick({with_fields(a, "::1"), with_fields(b, "::3")});
  Tally seen;
  for (int i = 0; i < 8; ++i) ++seen[served_by(balancer->address())];
  EXPECT_EQ(seen, (Tally{{"a", 2}, {"b", 6}}));
}

TEST(QuickMode, NodeWithoutPortUsesTheListeningPort) {
  // Verifies that a node written without a port is reached on the balancer's own port: the
  // balancer listens on 127.0.0.2:P and forwards to 127.0.0.1:P. P is the backend's port, chosen
  // by the kernel on 127.0.0.1; another test's socket may hold 127.0.0.2:P at that moment (a
  // client bound to 127.0.0.2 got P as its ephemeral port), so a refused listen takes another P.
  constexpr int kAttempts = 5;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    Backend node("same-port", kGreet);
    const std::string listen = "127.0.0.2:" + std::to_string(node.port());
    Process balancer({binary("protobalance"), "--listen", listen, "--threads", "1", "127.0.0.1"});
    const auto started =
        balancer.wait_for(std::regex("serving with \\d+ worker|cannot listen on"), in(15s));
    ASSERT_TRUE(started) << "protobalance did not start; output:\n" << balancer.output();
    if ((*started)[0] == "cannot listen on") continue;
    EXPECT_EQ(served_by(listen), "same-port");
    return;
  }
  FAIL() << "127.0.0.2:P was taken on each of " << kAttempts << " attempts";
}

TEST(QuickMode, NodesOnIpv6InBrackets) {
  // Verifies a bracketed IPv6 node with further fields ([::1]:PORT:5).
  Backend v6("v6", kGreet, "::1");
  auto balancer = start_quick({"[::1]:" + std::to_string(v6.port()) + ":5"});
  EXPECT_EQ(served_by(balancer->address()), "v6");
}

TEST(QuickMode, HashGroupKeepsClientsAndTwoBalancersAgree) {
  // Verifies `a b c %`: each client address (127.0.0.2..13) always reaches the same node, a
  // second balancer started with the same line (built-in key) chooses the same node for each,
  // and one with another --hash-key moves some clients.
  Backend a("a", kGreet);
  Backend b("b", kGreet);
  Backend c("c", kGreet);
  const std::vector<std::string> line{a.address(), b.address(), c.address(), "%"};
  auto first = start_quick(line);
  auto twin = start_quick(line);
  auto other = start_quick(line, {"--hash-key", "f0e0d0c0b0a090807060504030201000"});
  std::set<std::string> used;
  int moved = 0;
  for (int host = 2; host <= 13; ++host) {
    const std::string source = "127.0.0." + std::to_string(host);
    const std::string node = served_by(first->address(), source);
    ASSERT_FALSE(node.empty()) << source << " was not served";
    used.insert(node);
    EXPECT_EQ(served_by(first->address(), source), node) << source << " moved";
    EXPECT_EQ(served_by(twin->address(), source), node) << source << ": the twin disagrees";
    if (served_by(other->address(), source) != node) ++moved;
  }
  EXPECT_GE(used.size(), 2U) << "every client on one node proves nothing";
  EXPECT_GT(moved, 0) << "--hash-key changed nothing";
}

TEST(QuickMode, HashGroupFallsBackToASingleNodeGroup) {
  // Verifies `a b % ! spare`: while a and b refuse connections, clients reach spare.
  Backend a("a", kGreet);
  Backend b("b", kGreet);
  Backend spare("spare", kGreet);
  auto balancer = start_quick({a.address(), b.address(), "%", "!", spare.address()});
  EXPECT_NE(served_by(balancer->address()), "spare");
  a.stop();
  b.stop();
  for (int i = 0; i < 3; ++i) EXPECT_EQ(served_by(balancer->address()), "spare") << i;
}

TEST(QuickMode, BadArgumentsExitTwoNamingTheArgument) {
  // Verifies exit code 2 and a message that names the offending argument, for each kind of
  // mistake in a line; --help shows examples.
  struct Case {
    std::vector<std::string> args;
    std::string named;
  };
  const std::vector<Case> cases{
      {{"127.0.0.1:80:1:2:3"}, "127.0.0.1:80:1:2:3: too many"},
      {{"127.0.0.1:80", "!"}, "!: a line cannot end"},
      {{"!", "127.0.0.1:80"}, "!: a line cannot start"},
      {{"%"}, "%: '%' must follow"},
      {{"127.0.0.1:99999"}, "127.0.0.1:99999: port must be"},
      {{"127.0.0.1:80::0"}, "127.0.0.1:80::0: load_factor"},
      {{"127.0.0.1:80:x"}, "127.0.0.1:80:x: max_connections"},
      {{"2001:db8::1"}, "2001:db8::1: IPv6 addresses need brackets"},
      {{"127.0.0.1:81", "127.0.0.1:82", "%", "127.0.0.1:83", "127.0.0.1:84"},
       "127.0.0.1:83: group 2 has several nodes"},
      {{"--algorithm", "random", "127.0.0.1:81", "%"}, "--algorithm random: a line with '%'"},
      {{"--hash-key", "zz", "127.0.0.1:81", "%"}, "--hash-key zz: a hash key is 32 hex digits"},
      {{"--hash-key", "000102030405060708090a0b0c0d0e0f", "127.0.0.1:81"}, "--hash-key: only"},
      {{"127.0.0.1"}, "127.0.0.1: no port given"},
      {{"nowhere.invalid:80"}, "nowhere.invalid:80: cannot resolve"},
      {{"--node", "127.0.0.1:81", "127.0.0.1:82"}, "excludes"},
  };
  for (const auto& c : cases) {
    std::vector<std::string> argv{binary("protobalance"), "--listen", "127.0.0.1:0"};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    const RunResult result = run(argv);
    EXPECT_EQ(result.exit_code, 2) << c.named << "\n" << result.output;
    EXPECT_NE(result.output.find(c.named), std::string::npos)
        << "expected '" << c.named << "' in:\n" << result.output;
  }
  const RunResult no_listen = run({binary("protobalance"), "127.0.0.1:81"});
  EXPECT_EQ(no_listen.exit_code, 2) << no_listen.output;
  EXPECT_NE(no_listen.output.find("--listen"), std::string::npos) << no_listen.output;

  const RunResult help = run({binary("protobalance"), "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.output.find("alpha::256 ! beta::64 ! failover"), std::string::npos)
      << help.output;
  EXPECT_NE(help.output.find("alpha:8081 beta:8081 %"), std::string::npos);
}

TEST(QuickMode, CheckValidatesTheLineWithoutStarting) {
  // Verifies that --check accepts a good line (exit 0) and refuses a bad one (exit 2).
  const RunResult good = run({binary("protobalance"), "--check", "--listen", "127.0.0.1:0",
                              "127.0.0.1:81::2", "!", "127.0.0.1:82"});
  EXPECT_EQ(good.exit_code, 0) << good.output;
  const RunResult bad =
      run({binary("protobalance"), "--check", "--listen", "127.0.0.1:0", "127.0.0.1:81", "!"});
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
}

}  // namespace
}  // namespace pb::test
