// End-to-end tests of balancing (issue 3): load factors, algorithms, fall-over chains, limits,
// tiers and node states, over real sockets on loopback. Tests that change node states at run
// time use an in-process runtime (RuntimeHarness); the others run the real protobalance binary.
//
// Nodes are Backends in greet_echo mode: each connection first receives "<node name>\n", so a
// client learns which node served it by reading one line. With `threads = 1` and sequential
// clients the algorithms are deterministic, so shares are asserted exactly.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support/backend.hpp"
#include "support/client.hpp"
#include "support/process.hpp"
#include "support/runtime_harness.hpp"

namespace pb::test {
namespace {

using config::AdminState;
using Clock = std::chrono::steady_clock;
using Tally = std::map<std::string, int>;

constexpr auto kGreet = BackendMode::greet_echo;

// --- Configuration ----------------------------------------------------------------------------

struct NodeSpec {
  std::string name;
  std::string address;
  std::string settings;  // further TOML lines of the [[cluster.node]] table, may be empty
};

struct ClusterSpec {
  std::string name;      // also the name of the listener that forwards to it
  std::string settings;  // further TOML lines of the [[cluster]] table, may be empty
  std::vector<NodeSpec> nodes;
};

// A whole configuration file: one listener on 127.0.0.1:0 per cluster, named like the cluster.
std::string config_toml(const std::vector<ClusterSpec>& clusters, unsigned threads = 1) {
  std::string out = "[service]\nthreads = " + std::to_string(threads) + "\nstate_dir = \"var\"\n";
  for (const auto& cluster : clusters) {
    out += "\n[[listener]]\nname = \"" + cluster.name + "\"\nlisten = \"127.0.0.1:0\"\n" +
           "cluster = \"" + cluster.name + "\"\n";
  }
  for (const auto& cluster : clusters) {
    out += "\n[[cluster]]\nname = \"" + cluster.name + "\"\n" + cluster.settings + "\n";
    for (const auto& node : cluster.nodes) {
      out += "[[cluster.node]]\nname = \"" + node.name + "\"\naddress = \"" + node.address +
             "\"\n" + node.settings + "\n";
    }
  }
  return out;
}

// The real binary on a configuration text; `dir` keeps the file.
std::unique_ptr<Balancer> start_balancer(const TempDir& dir, const std::string& toml,
                                         const std::string& file_name = "pb.toml") {
  const auto file = dir.write(file_name, toml);
  return std::make_unique<Balancer>(std::vector<std::string>{"--config", file.string()});
}

// --- Clients ----------------------------------------------------------------------------------

// Connects (from `source` when not empty), reads the node's greeting and closes: the name of
// the node that served the connection, or "" when none did within the deadline.
std::string served_by(const std::string& address, const std::string& source = "") {
  Client client(address, 5s, source);
  if (!client.connected()) return "";
  return client.recv_line(in(5s));
}

// A client connection kept open, with the name of the node that greeted it ("" if none).
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

// Sends `text` on a held connection and reads it back: the connection still relays both ways.
bool echoes(Held& held, const std::string& text) {
  return held.client.send_all(text, in(5s)) && held.client.recv_exact(text.size(), in(5s)) == text;
}

// Polls `condition` every 10 ms until it holds or `timeout` has passed; returns whether it held.
template <typename Condition>
bool eventually(Condition&& condition, std::chrono::milliseconds timeout) {
  const auto deadline = in(timeout);
  for (;;) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);  // polling interval, bounded by the deadline
  }
}

std::chrono::milliseconds since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
}

// A listener on one exact 127.0.0.1 port that sends `greeting` to every connection and keeps it
// open until destroyed: a node coming back on the port that a stopped Backend left (a Backend
// always binds port 0). SO_REUSEADDR lets it bind while old connections are in TIME_WAIT.
class GreeterOnPort {
 public:
  GreeterOnPort(std::uint16_t port, std::string greeting) : greeting_(std::move(greeting)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port);
    listening_ = ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                 ::listen(fd_, 64) == 0;
    if (listening_) thread_ = std::thread([this] { serve(); });
  }
  ~GreeterOnPort() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    for (int fd : connections_) ::close(fd);
    ::close(fd_);
  }
  GreeterOnPort(const GreeterOnPort&) = delete;
  GreeterOnPort& operator=(const GreeterOnPort&) = delete;

  bool listening() const { return listening_; }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;  // 20 ms: how soon the destructor is noticed
      const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      // A probe may have closed already; a failed send is of no interest then.
      (void)::send(fd, greeting_.data(), greeting_.size(), MSG_NOSIGNAL);
      connections_.push_back(fd);
    }
  }

  std::string greeting_;
  int fd_ = -1;
  bool listening_ = false;
  std::atomic<bool> stop_{false};
  std::vector<int> connections_;  // touched by serve() only, until it is joined
  std::thread thread_;
};

// --- Algorithms -------------------------------------------------------------------------------

TEST(Balancing, WeightedRoundRobinGivesExactSharesInterleaved) {
  // Verifies that round_robin with load factors 1, 2, 3 over 60 sequential connections on one
  // worker gives exactly 10, 20 and 30, that every block of 6 consecutive connections already
  // holds 1, 2 and 3, and that they are interleaved (no node serves 3 in a row).
  Backend a("a", kGreet);
  Backend b("b", kGreet);
  Backend c("c", kGreet);
  TempDir dir;
  auto balancer = start_balancer(dir, config_toml({{"pool", "algorithm = \"round_robin\"",
                                                    {{"a", a.address(), "load_factor = 1"},
                                                     {"b", b.address(), "load_factor = 2"},
                                                     {"c", c.address(), "load_factor = 3"}}}}));
  Tally total;
  std::string previous;
  int streak = 0;
  int longest_streak = 0;
  for (int block = 0; block < 10; ++block) {
    Tally window;
    for (int i = 0; i < 6; ++i) {
      const std::string node = served_by(balancer->address("pool"));
      ++window[node];
      ++total[node];
      streak = node == previous ? streak + 1 : 1;
      longest_streak = std::max(longest_streak, streak);
      previous = node;
    }
    EXPECT_EQ(window, (Tally{{"a", 1}, {"b", 2}, {"c", 3}})) << "block " << block;
  }
  EXPECT_LE(longest_streak, 2) << "picks come in bursts";
  EXPECT_EQ(total, (Tally{{"a", 10}, {"b", 20}, {"c", 30}}));
  EXPECT_EQ(a.accepted(), 10);
  EXPECT_EQ(b.accepted(), 20);
  EXPECT_EQ(c.accepted(), 30);
}

TEST(Balancing, LeastConnectionsSendsNewConnectionsAwayFromTheBusyNode) {
  // Verifies that with 4 connections held on node a, least_connections sends the next 6 to
  // the idle nodes b and c (3 each, ties rotating) and none to a.
  Backend a("a", kGreet);
  Backend b("b", kGreet);
  Backend c("c", kGreet);
  // b and c start offline so that the first connections can only go to a.
  RuntimeHarness harness(config_toml({{"pool", "algorithm = \"least_connections\"",
                                       {{"a", a.address(), ""},
                                        {"b", b.address(), "state = \"offline\""},
                                        {"c", c.address(), "state = \"offline\""}}}}));
  std::vector<Held> busy;
  for (int i = 0; i < 4; ++i) busy.push_back(hold(harness.address("pool")));
  ASSERT_EQ(tally(busy), (Tally{{"a", 4}}));
  ASSERT_TRUE(harness.set_node_state("pool", "b", AdminState::available));
  ASSERT_TRUE(harness.set_node_state("pool", "c", AdminState::available));

  std::vector<Held> fresh;
  for (int i = 0; i < 6; ++i) fresh.push_back(hold(harness.address("pool")));
  EXPECT_EQ(tally(fresh), (Tally{{"b", 3}, {"c", 3}}));
  EXPECT_EQ(a.open_connections(), 4);
  EXPECT_EQ(a.accepted(), 4);
}

TEST(Balancing, MinLoadWeighsHeldConnectionsByLoadFactorAndRating) {
  // Verifies min_load over held connections: with the default rating
  // "connections / load_factor" 8 connections split 2:6 over load factors 1 and 3; with the
  // rating "connections" (load factor ignored) the same nodes split 4:4.
  Backend rated_a("rated_a", kGreet);
  Backend rated_b("rated_b", kGreet);
  Backend flat_a("flat_a", kGreet);
  Backend flat_b("flat_b", kGreet);
  TempDir dir;
  auto balancer = start_balancer(
      dir, config_toml({{"rated", "algorithm = \"min_load\"",
                         {{"a", rated_a.address(), "load_factor = 1"},
                          {"b", rated_b.address(), "load_factor = 3"}}},
                        {"flat", "algorithm = \"min_load\"\nload_rating = \"connections\"",
                         {{"a", flat_a.address(), "load_factor = 1"},
                          {"b", flat_b.address(), "load_factor = 3"}}}}));
  std::vector<Held> rated;
  std::vector<Held> flat;
  for (int i = 0; i < 8; ++i) {
    rated.push_back(hold(balancer->address("rated")));
    flat.push_back(hold(balancer->address("flat")));
  }
  EXPECT_EQ(tally(rated), (Tally{{"rated_a", 2}, {"rated_b", 6}}));
  EXPECT_EQ(tally(flat), (Tally{{"flat_a", 4}, {"flat_b", 4}}));
  EXPECT_EQ(rated_b.open_connections(), 6);

  // The held connections keep counting: 4 more settle at the next balance point, 3:9.
  for (int i = 0; i < 4; ++i) rated.push_back(hold(balancer->address("rated")));
  EXPECT_EQ(tally(rated), (Tally{{"rated_a", 3}, {"rated_b", 9}}));
}

TEST(Balancing, HashKeepsEachClientOnOneNodeAndTwinInstancesAgree) {
  // Verifies that hash sends each of 20 client addresses (127.0.0.2 .. 127.0.0.21) to the same
  // node every time, that a second balancer process with the same hash_key and node names
  // chooses the same node for every one of them, and that another key gives another mapping.
  Backend a("a", kGreet);
  Backend b("b", kGreet);
  Backend c("c", kGreet);
  const auto cluster = [&](const std::string& key) {
    return config_toml({{"pool", "algorithm = \"hash\"\nhash_key = \"" + key + "\"",
                         {{"a", a.address(), ""}, {"b", b.address(), ""}, {"c", c.address(), ""}}}},
                       2);
  };
  TempDir dir;
  // Each instance in a folder of its own: two daemons may not share a state_dir (admin socket).
  auto first = start_balancer(dir, cluster("000102030405060708090a0b0c0d0e0f"), "first/pb.toml");
  auto twin = start_balancer(dir, cluster("000102030405060708090a0b0c0d0e0f"), "twin/pb.toml");
  auto other = start_balancer(dir, cluster("f0e0d0c0b0a090807060504030201000"), "other/pb.toml");

  std::set<std::string> used;
  int moved_by_other_key = 0;
  for (int host = 2; host <= 21; ++host) {
    const std::string source = "127.0.0." + std::to_string(host);
    const std::string node = served_by(first->address("pool"), source);
    ASSERT_FALSE(node.empty()) << source << " was not served";
    used.insert(node);
    for (int again = 0; again < 3; ++again) {
      EXPECT_EQ(served_by(first->address("pool"), source), node) << source << " moved";
    }
    for (int again = 0; again < 2; ++again) {
      EXPECT_EQ(served_by(twin->address("pool"), source), node) << source << " twin disagrees";
    }
    if (served_by(other->address("pool"), source) != node) ++moved_by_other_key;
  }
  // 20 clients on a single node would make the agreement above meaningless.
  EXPECT_GE(used.size(), 2U);
  EXPECT_GT(moved_by_other_key, 0);
}

// --- Fall-over ---------------------------------------------------------------------------------

TEST(Balancing, RefusedNodeFallsOverToItsFallOverNode) {
  // Verifies that when node a refuses, its connections go to its fall-over node c, not to the
  // algorithm's next choice b: the very first connection (round robin picks a first) lands on
  // c, and of 6 connections b keeps its own share of 2 while c takes a's 2 and its own 2.
  const std::string dead = closed_port_address();
  Backend b("b", kGreet);
  Backend c("c", kGreet);
  TempDir dir;
  auto balancer = start_balancer(dir, config_toml({{"pool", "",
                                                    {{"a", dead, "fallover = \"c\""},
                                                     {"b", b.address(), ""},
                                                     {"c", c.address(), ""}}}}));
  std::vector<std::string> order;
  for (int i = 0; i < 6; ++i) order.push_back(served_by(balancer->address("pool")));
  for (const auto& node : order) EXPECT_FALSE(node.empty()) << "a client was not served";
  EXPECT_EQ(order.front(), "c") << "the connection that failed on a did not go to a's fall-over";
  EXPECT_EQ(b.accepted(), 2);
  EXPECT_EQ(c.accepted(), 4);
  EXPECT_TRUE(balancer->process().wait_for(std::regex("node pool/a unavailable: refused"), in(2s)))
      << balancer->process().output();
}

TEST(Balancing, ConnectTimeoutFallsOverAndMarksTheNodeUnavailable) {
  // Verifies that a node whose connects hang is given up after connect_timeout (300 ms), the
  // client is served by the fall-over node after about that delay, and later clients are not
  // sent to the hanging node again (no further delay) within retry_interval.
  BlackHole hole;
  Backend good("good", kGreet);
  TempDir dir;
  auto balancer = start_balancer(
      dir, config_toml({{"pool", "connect_timeout = \"300ms\"\nretry_interval = \"10s\"",
                         {{"hole", hole.address(), "fallover = \"good\""},
                          {"good", good.address(), ""}}}}));
  // Round robin over equal load factors starts with the first node listed: the hole.
  const auto start = Clock::now();
  EXPECT_EQ(served_by(balancer->address("pool")), "good");
  const auto first = since(start);
  EXPECT_GE(first, 290ms) << "the hole was not tried first";
  EXPECT_LT(first, 3s);
  EXPECT_TRUE(balancer->process().wait_for(std::regex("node pool/hole unavailable: timeout"),
                                           in(2s)))
      << balancer->process().output();
  for (int i = 0; i < 4; ++i) {
    const auto again = Clock::now();
    EXPECT_EQ(served_by(balancer->address("pool")), "good");
    EXPECT_LT(since(again), 250ms) << "connection " << i << " waited for the hole again";
  }
  EXPECT_EQ(good.accepted(), 5);
}

TEST(Balancing, NodeClosingBeforeDataFallsOver) {
  // Verifies that a node that accepts and closes at once, before any byte moved either way (the
  // client only reads: the node is expected to speak first), counts as unavailable: the client
  // is served by the fall-over node, and the closing node is not tried again.
  Backend closer("closer", BackendMode::close_at_once);
  Backend greeter("greeter", kGreet);
  TempDir dir;
  auto balancer = start_balancer(dir, config_toml({{"pool", "",
                                                    {{"closer", closer.address(),
                                                      "fallover = \"greeter\""},
                                                     {"greeter", greeter.address(), ""}}}}));
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(served_by(balancer->address("pool")), "greeter") << "connection " << i;
  }
  EXPECT_EQ(closer.accepted(), 1) << "the closing node was not tried first, or tried again";
  EXPECT_EQ(greeter.accepted(), 4);
  EXPECT_TRUE(balancer->process().wait_for(std::regex("node pool/closer unavailable: closed"),
                                           in(2s)))
      << balancer->process().output();
}

TEST(Balancing, FallOverChainSkipsTwoDeadNodes) {
  // Verifies a chain a -> b -> c with a and b refusing: everything round robin gives a or b
  // goes to c, also the very first connection, which tries a, then b, then c (not d, which the
  // algorithm would pick next). Of 8 connections over a, d, b, c (listed in that order, equal
  // load factors) c serves 6 and d its own 2.
  const std::string dead_a = closed_port_address();
  const std::string dead_b = closed_port_address();
  Backend c("c", kGreet);
  Backend d("d", kGreet);
  TempDir dir;
  auto balancer = start_balancer(dir, config_toml({{"pool", "",
                                                    {{"a", dead_a, "fallover = \"b\""},
                                                     {"d", d.address(), ""},
                                                     {"b", dead_b, "fallover = \"c\""},
                                                     {"c", c.address(), ""}}}}));
  std::vector<std::string> order;
  for (int i = 0; i < 8; ++i) order.push_back(served_by(balancer->address("pool")));
  for (const auto& node : order) EXPECT_FALSE(node.empty()) << "a client was not served";
  EXPECT_EQ(order.front(), "c") << "the first connection did not follow a's chain";
  EXPECT_EQ(c.accepted(), 6);
  EXPECT_EQ(d.accepted(), 2);
  auto& process = balancer->process();
  EXPECT_TRUE(process.wait_for(std::regex("node pool/a unavailable: refused"), in(2s)));
  EXPECT_TRUE(process.wait_for(std::regex("node pool/b unavailable: refused"), in(2s)))
      << process.output();
}

TEST(Balancing, PeriodicRetryBringsANodeBack) {
  // Verifies that an unavailable node is probed every retry_interval (500 ms) and takes new
  // clients again soon after it listens again: not before the interval has passed since it
  // failed, and within the interval plus a margin of 1 s.
  Backend x("x", kGreet);
  Backend y("y", kGreet);
  const std::uint16_t x_port = x.port();
  x.stop();
  ASSERT_TRUE(eventually([&] { return !Client(x.address(), 1s).connected(); }, 5s))
      << "the stopped backend still accepts";
  TempDir dir;
  auto balancer = start_balancer(
      dir, config_toml({{"pool", "retry_interval = \"500ms\"",
                         {{"x", x.address(), ""}, {"y", y.address(), ""}}}}));
  // Round robin starts with x, which refuses: the client is served by y and x is marked.
  const auto before_failure = Clock::now();
  ASSERT_EQ(served_by(balancer->address("pool")), "y");
  const auto after_failure = Clock::now();
  ASSERT_TRUE(balancer->process().wait_for(std::regex("node pool/x unavailable: refused"), in(2s)))
      << balancer->process().output();

  GreeterOnPort revived(x_port, "x-revived\n");
  ASSERT_TRUE(revived.listening()) << "cannot listen on x's port " << x_port << " again";
  std::string last;
  Clock::time_point reached_at;
  const bool back = eventually(
      [&] {
        last = served_by(balancer->address("pool"));
        reached_at = Clock::now();
        return last == "x-revived";
      },
      500ms + 1500ms);
  ASSERT_TRUE(back) << "x was not used again; last client got \"" << last << "\"";
  EXPECT_GE(reached_at - before_failure, 500ms) << "x was retried before retry_interval";
  EXPECT_LE(reached_at - after_failure, 500ms + 1000ms);
  EXPECT_TRUE(balancer->process().wait_for(std::regex("node pool/x is up again"), in(2s)))
      << balancer->process().output();
}

// --- Limits and tiers ---------------------------------------------------------------------------

TEST(Balancing, MaxConnectionsOverflowsIntoTheFallOverNodeAndBack) {
  // Verifies that a node at max_connections (2) passes its share to its fall-over node b (not
  // to c), never holds more than 2, and takes a new connection again once one of its own ends.
  Backend a("a", kGreet);
  Backend b("b", kGreet);
  Backend c("c", kGreet);
  TempDir dir;
  auto balancer = start_balancer(dir, config_toml({{"pool", "",
                                                    {{"a", a.address(),
                                                      "max_connections = 2\nfallover = \"b\""},
                                                     {"b", b.address(), ""},
                                                     {"c", c.address(), ""}}}}));
  std::vector<Held> held;
  for (int i = 0; i < 9; ++i) held.push_back(hold(balancer->address("pool")));
  // Round robin gives each node 3; a's third goes to its fall-over b.
  EXPECT_EQ(tally(held), (Tally{{"a", 2}, {"b", 4}, {"c", 3}}));
  EXPECT_EQ(a.open_connections(), 2);

  // Free one of a's slots: its client closes, and the balancer releases the slot once the
  // relay ends. New clients reach a again.
  auto on_a = std::find_if(held.begin(), held.end(), [](const Held& h) { return h.node == "a"; });
  ASSERT_NE(on_a, held.end());
  on_a->client.shutdown_write();
  EXPECT_EQ(on_a->client.wait_closed(in(5s)), PeerClose::eof);
  on_a->client.close();
  std::string last;
  const bool back = eventually(
      [&] {
        Held probe = hold(balancer->address("pool"));
        last = probe.node;
        if (probe.node == "a") held.push_back(std::move(probe));  // keep a full again
        return last == "a";
      },
      3s);
  EXPECT_TRUE(back) << "a took no new connection after a slot freed; last went to " << last;
  EXPECT_EQ(a.open_connections(), 2);

  // Full again: the next three connections (one round of round robin, which picks every node
  // once) overflow a's share into b again.
  std::vector<Held> more;
  for (int i = 0; i < 3; ++i) more.push_back(hold(balancer->address("pool")));
  EXPECT_EQ(tally(more), (Tally{{"b", 2}, {"c", 1}}));
  EXPECT_EQ(a.open_connections(), 2);
}

TEST(Balancing, TierTwoServesOnlyWhileTierOneIsExhausted) {
  // Verifies that the tier 2 node takes no connection while a tier 1 node is eligible, takes
  // them all when tier 1 is offline or draining, or dead, and none again once tier 1 is back.
  Backend t1a("t1a", kGreet);
  Backend t1b("t1b", kGreet);
  Backend t2("t2", kGreet);
  Backend backup("backup", kGreet);
  const std::string dead = closed_port_address();
  RuntimeHarness harness(config_toml({{"pool", "",
                                       {{"t1a", t1a.address(), ""},
                                        {"t1b", t1b.address(), ""},
                                        {"t2", t2.address(), "tier = 2"}}},
                                      {"dead", "",
                                       {{"primary", dead, ""},
                                        {"backup", backup.address(), "tier = 2"}}}}));
  // Sends n sequential clients to the pool; which nodes served them.
  const auto serve = [&](int n) {
    Tally out;
    for (int i = 0; i < n; ++i) ++out[served_by(harness.address("pool"))];
    return out;
  };
  EXPECT_EQ(serve(6), (Tally{{"t1a", 3}, {"t1b", 3}}));

  ASSERT_TRUE(harness.set_node_state("pool", "t1a", AdminState::offline));
  EXPECT_EQ(serve(4), (Tally{{"t1b", 4}})) << "tier 2 used while t1b was eligible";

  ASSERT_TRUE(harness.set_node_state("pool", "t1b", AdminState::draining));
  EXPECT_EQ(serve(4), (Tally{{"t2", 4}}));

  ASSERT_TRUE(harness.set_node_state("pool", "t1a", AdminState::available));
  EXPECT_EQ(serve(4), (Tally{{"t1a", 4}}));
  ASSERT_TRUE(harness.set_node_state("pool", "t1b", AdminState::available));
  EXPECT_EQ(serve(6), (Tally{{"t1a", 3}, {"t1b", 3}}));
  EXPECT_EQ(t2.accepted(), 4);

  // A tier 1 that refuses connections is exhausted too.
  for (int i = 0; i < 4; ++i) EXPECT_EQ(served_by(harness.address("dead")), "backup");
}

// --- Node states ----------------------------------------------------------------------------------

TEST(Balancing, DrainingKeepsExistingConnectionsWhileNewOnesGoElsewhere) {
  // Verifies that a draining node's open connection keeps relaying both ways and ends
  // normally, that it gets no new connection meanwhile, and that it takes new ones again once
  // available.
  Backend a("a", kGreet);
  Backend b("b", kGreet);
  RuntimeHarness harness(config_toml({{"pool", "", {{"a", a.address(), ""}, {"b", b.address(), ""}}}}));
  Held on_a = hold(harness.address("pool"));
  ASSERT_EQ(on_a.node, "a");  // round robin starts with the first node listed
  ASSERT_TRUE(echoes(on_a, "before draining"));

  ASSERT_TRUE(harness.set_node_state("pool", "a", AdminState::draining));
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(served_by(harness.address("pool")), "b") << "connection " << i;
    EXPECT_TRUE(echoes(on_a, "still relaying " + std::to_string(i)));
  }
  EXPECT_EQ(a.accepted(), 1);
  EXPECT_EQ(a.open_connections(), 1);

  // The connection runs to its natural end: the client's FIN reaches a, a's FIN comes back.
  on_a.client.shutdown_write();
  PeerClose how = PeerClose::timeout;
  EXPECT_EQ(on_a.client.recv_all(in(5s), &how), "");
  EXPECT_EQ(how, PeerClose::eof);

  ASSERT_TRUE(harness.set_node_state("pool", "a", AdminState::available));
  Tally after;
  for (int i = 0; i < 4; ++i) ++after[served_by(harness.address("pool"))];
  EXPECT_EQ(after, (Tally{{"a", 2}, {"b", 2}}));
}

TEST(Balancing, OfflineClosesItsConnectionsWithin100msAndTakesNoNewOnes) {
  // Verifies that setting a node offline closes every connection to it, on the client's side
  // within 100 ms and on the node's side too, leaves other nodes' connections alone, sends no
  // new connection to it, and that it takes new ones again once available.
  Backend a("a", kGreet);
  Backend b("b", kGreet);
  RuntimeHarness harness(config_toml({{"pool", "", {{"a", a.address(), ""}, {"b", b.address(), ""}}}}));
  std::vector<Held> held;
  for (int i = 0; i < 6; ++i) held.push_back(hold(harness.address("pool")));
  ASSERT_EQ(tally(held), (Tally{{"a", 3}, {"b", 3}}));
  for (auto& h : held) ASSERT_TRUE(echoes(h, "hello"));

  const auto start = Clock::now();
  ASSERT_TRUE(harness.set_node_state("pool", "a", AdminState::offline));
  for (auto& h : held) {
    if (h.node != "a") continue;
    EXPECT_NE(h.client.wait_closed(start + 2s), PeerClose::timeout);
  }
  const auto closed_after = since(start);
  EXPECT_LT(closed_after, 100ms) << "closing took " << closed_after.count() << " ms";
  EXPECT_TRUE(eventually([&] { return a.open_connections() == 0; }, 2s))
      << "the node's side stayed open: " << a.open_connections();
  for (auto& h : held) {
    if (h.node == "b") {
      EXPECT_TRUE(echoes(h, "unaffected"));
    }
  }

  for (int i = 0; i < 6; ++i) EXPECT_EQ(served_by(harness.address("pool")), "b");
  EXPECT_EQ(a.accepted(), 3);

  ASSERT_TRUE(harness.set_node_state("pool", "a", AdminState::available));
  Tally after;
  for (int i = 0; i < 4; ++i) ++after[served_by(harness.address("pool"))];
  EXPECT_EQ(after, (Tally{{"a", 2}, {"b", 2}}));
}

TEST(Balancing, AllNodesDownClosesClientPromptly) {
  // Verifies that when every node refuses (a with its fall-over b), each client is closed
  // within a second, without a byte, and the balancer keeps running.
  const std::string dead_a = closed_port_address();
  const std::string dead_b = closed_port_address();
  TempDir dir;
  auto balancer = start_balancer(
      dir, config_toml({{"pool", "", {{"a", dead_a, "fallover = \"b\""}, {"b", dead_b, ""}}}}));
  for (int i = 0; i < 3; ++i) {
    Client client(balancer->address("pool"));
    ASSERT_TRUE(client.connected()) << client.error();
    const auto start = Clock::now();
    PeerClose how = PeerClose::timeout;
    EXPECT_EQ(client.recv_all(in(5s), &how), "");
    EXPECT_NE(how, PeerClose::timeout) << "connection " << i;
    EXPECT_LT(since(start), 1s) << "connection " << i;
  }
  EXPECT_TRUE(balancer->process().running());
}

TEST(Balancing, NoEligibleNodeClosesClientPromptlyUntilOneIsBack) {
  // Verifies that with every node draining or offline a client is closed within a second, and
  // that clients are served again as soon as a node is available.
  Backend a("a", kGreet);
  Backend b("b", kGreet);
  RuntimeHarness harness(config_toml({{"pool", "", {{"a", a.address(), ""}, {"b", b.address(), ""}}}}));
  ASSERT_TRUE(harness.set_node_state("pool", "a", AdminState::draining));
  ASSERT_TRUE(harness.set_node_state("pool", "b", AdminState::offline));
  for (int i = 0; i < 3; ++i) {
    Client client(harness.address("pool"));
    ASSERT_TRUE(client.connected()) << client.error();
    const auto start = Clock::now();
    EXPECT_NE(client.wait_closed(in(5s)), PeerClose::timeout) << "connection " << i;
    EXPECT_LT(since(start), 1s) << "connection " << i;
  }
  EXPECT_EQ(a.accepted() + b.accepted(), 0);

  ASSERT_TRUE(harness.set_node_state("pool", "b", AdminState::available));
  EXPECT_EQ(served_by(harness.address("pool")), "b");
}

}  // namespace
}  // namespace pb::test
