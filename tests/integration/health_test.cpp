// End-to-end tests of node health (issue 12): one balancer across worker threads, the last
// resort, active health checks, the agent and slow start. Real sockets on loopback, real
// backends in-process, an in-process balancer (RuntimeHarness) so that node run-time state can
// be watched. Backends greet each connection with their name, so a client knows its node.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/json/object.hpp>
#include <gtest/gtest.h>

#include "protobalance/control/status_document.hpp"

#include "support/backend.hpp"
#include "support/client.hpp"
#include "support/runtime_harness.hpp"

namespace pb::test {
namespace {

using Clock = std::chrono::steady_clock;
using Tally = std::map<std::string, int>;

struct NodeSpec {
  std::string name;
  std::string address;
};

// One listener "pool" on 127.0.0.1:0 forwarding to cluster "pool" with `settings` (TOML lines,
// sub-tables last) and `nodes`.
std::string pool_toml(const std::string& settings, const std::vector<NodeSpec>& nodes,
                      const std::string& tables = "") {
  std::string out =
      "[service]\nstate_dir = \"var\"\n\n[[listener]]\nname = \"pool\"\n"
      "listen = \"127.0.0.1:0\"\ncluster = \"pool\"\n\n[[cluster]]\nname = \"pool\"\n" +
      settings + "\n" + tables + "\n";
  for (const auto& node : nodes) {
    out += "[[cluster.node]]\nname = \"" + node.name + "\"\naddress = \"" + node.address + "\"\n";
  }
  return out;
}

std::string served_by(const std::string& address) {
  Client client(address, 5s);
  if (!client.connected()) return "";
  return client.recv_line(in(5s));
}

template <typename Condition>
bool eventually(Condition&& condition, std::chrono::milliseconds timeout) {
  const auto deadline = in(timeout);
  for (;;) {
    if (condition()) return true;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(10ms);  // polling interval, bounded by the deadline
  }
}

// The run-time state of a node of cluster "pool" in the harness's current configuration.
const balance::NodeRuntime& node_state(RuntimeHarness& harness, const std::string& node) {
  const auto snapshot = harness.runtime().snapshot();
  const auto& cluster = *snapshot->clusters.at("pool");
  const std::int32_t index = cluster.find(node);
  if (index < 0) throw std::runtime_error("no node " + node);
  // The registry keeps the runtime alive as long as the node is configured.
  return *cluster.nodes()[static_cast<std::size_t>(index)].runtime;
}

// The node's `check` in the status document (what `pbadmin status --json` prints) says that it
// is down and why: the last failure's reason, what came back, and when.
void expect_check_failure_in_status(RuntimeHarness& harness, const std::string& node,
                                    const std::string& reason, const std::string& detail_start) {
  const boost::json::object document = control::status_document(harness.runtime().status());
  const boost::json::object* found = nullptr;
  for (const auto& cluster : document.at("clusters").as_array()) {
    for (const auto& n : cluster.as_object().at("nodes").as_array()) {
      if (n.as_object().at("name") == node.c_str()) found = &n.as_object();
    }
  }
  ASSERT_NE(found, nullptr) << node;
  const auto& check = found->at("check").as_object();
  EXPECT_EQ(check.at("down"), true);
  EXPECT_EQ(check.at("last_result"), reason.c_str());
  EXPECT_TRUE(check.at("last_change").is_string());
  const auto& failure = check.at("last_failure").as_object();
  EXPECT_EQ(failure.at("reason"), reason.c_str());
  const std::string detail(failure.at("detail").as_string());
  EXPECT_EQ(detail.rfind(detail_start, 0), 0U) << detail;
  EXPECT_TRUE(failure.at("at").is_string());
}

Tally tally_of(RuntimeHarness& harness, int clients) {
  Tally out;
  for (int i = 0; i < clients; ++i) ++out[served_by(harness.address("pool"))];
  return out;
}

// An agent on one exact address and port ("127.0.0.2", port 0 = any) that answers every
// connection with the current reply line and closes.
class AgentStub {
 public:
  AgentStub(const std::string& host, std::uint16_t port, std::string reply) : reply_(std::move(reply)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    ::inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
    addr.sin_port = htons(port);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd_, 64) != 0) {
      return;
    }
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~AgentStub() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    ::close(fd_);
  }
  AgentStub(const AgentStub&) = delete;
  AgentStub& operator=(const AgentStub&) = delete;

  std::uint16_t port() const { return port_; }  // 0 when it could not listen
  void set_reply(std::string reply) {
    std::lock_guard lock(mutex_);
    reply_ = std::move(reply);
  }

 private:
  void serve() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;  // 20 ms: how soon the destructor is noticed
      const int fd = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      std::string line;
      {
        std::lock_guard lock(mutex_);
        line = reply_ + "\n";
      }
      (void)::send(fd, line.data(), line.size(), MSG_NOSIGNAL);
      ::close(fd);
    }
  }

  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::mutex mutex_;
  std::string reply_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// --- One balancer across worker threads ------------------------------------------------------

void expect_exact_round_robin(unsigned threads) {
  Backend a("a", BackendMode::greet_echo);
  Backend b("b", BackendMode::greet_echo);
  Backend c("c", BackendMode::greet_echo);
  RuntimeHarness harness(
      pool_toml("", {{"a", a.address()}, {"b", b.address()}, {"c", c.address()}}), threads);
  ASSERT_EQ(harness.runtime().threads(), threads);
  std::string sequence;
  for (int i = 0; i < 12; ++i) sequence += served_by(harness.address("pool"));
  EXPECT_EQ(sequence, "abcabcabcabc") << threads << " threads";
}

TEST(Health, RoundRobinIsExactWithTwoThreads) {
  // Verifies 12 sequential connections over three equal nodes go a, b, c in turn, 4 each,
  // although the kernel spreads them over two worker threads.
  expect_exact_round_robin(2);
}

TEST(Health, RoundRobinIsExactWithFourThreads) {
  // Verifies the same with four worker threads.
  expect_exact_round_robin(4);
}

TEST(Health, WeightedRoundRobinKeepsItsSmoothOrderAcrossThreads) {
  // Verifies the smooth weighted order (weights 1, 2, 3 give c, b, c, a, b, c) holds over all
  // threads, twice over.
  Backend a("a", BackendMode::greet_echo);
  Backend b("b", BackendMode::greet_echo);
  Backend c("c", BackendMode::greet_echo);
  std::string toml = pool_toml("", {{"a", a.address()}, {"b", b.address()}, {"c", c.address()}});
  // Load factors, written into each node's table.
  const auto put = [&toml](const std::string& node, const std::string& line) {
    const auto at = toml.find("name = \"" + node + "\"\naddress");
    toml.insert(at, line + "\n");
  };
  put("b", "load_factor = 2");
  put("c", "load_factor = 3");
  RuntimeHarness harness(toml, 2);
  std::string sequence;
  for (int i = 0; i < 12; ++i) sequence += served_by(harness.address("pool"));
  EXPECT_EQ(sequence, "cbcabccbcabc");
}

// --- Last resort -------------------------------------------------------------------------------

TEST(Health, NodeBackBeforeItsProbeServesTheNextClient) {
  // Verifies that a single node that failed one client (closed before any byte, as while it
  // restarts) serves the next client at once, long before its retry_interval (1 h) probe: with
  // no eligible node left it is tried as a last resort, and the success brings it back.
  Backend a("a", BackendMode::close_at_once);
  RuntimeHarness harness(pool_toml("retry_interval = \"1h\"", {{"a", a.address()}}));
  EXPECT_EQ(served_by(harness.address("pool")), "");
  ASSERT_TRUE(eventually([&] { return !node_state(harness, "a").up(); }, 5s));
  a.set_mode(BackendMode::greet_echo);
  const auto start = Clock::now();
  EXPECT_EQ(served_by(harness.address("pool")), "a");
  EXPECT_LT(Clock::now() - start, 3s);
  EXPECT_TRUE(node_state(harness, "a").up());
  EXPECT_EQ(served_by(harness.address("pool")), "a");
}

TEST(Health, LastResortFallsOverToTheNextUnavailableNode) {
  // Verifies that with both nodes unavailable a client is still served by the one that is back,
  // whichever is tried first: the last resort falls over like any choice.
  Backend a("a", BackendMode::close_at_once);
  Backend b("b", BackendMode::close_at_once);
  RuntimeHarness harness(
      pool_toml("retry_interval = \"1h\"", {{"a", a.address()}, {"b", b.address()}}));
  EXPECT_EQ(served_by(harness.address("pool")), "");
  ASSERT_TRUE(eventually(
      [&] { return !node_state(harness, "a").up() && !node_state(harness, "b").up(); }, 5s));
  b.set_mode(BackendMode::greet_echo);
  EXPECT_EQ(served_by(harness.address("pool")), "b");
  EXPECT_TRUE(node_state(harness, "b").up());
  EXPECT_FALSE(node_state(harness, "a").up());
}

// --- Active health checks ----------------------------------------------------------------------

TEST(Health, WrongAnswerTakesTheNodeOutAfterFallAndBackAfterRise) {
  // Verifies that a node which accepts but answers the wrong thing goes down after `fall`
  // failed checks (mismatch) and takes no new client, and comes back after `rise` passes.
  Backend a("a", BackendMode::greet_echo);
  Backend b("b", BackendMode::greet_echo);
  RuntimeHarness harness(pool_toml("", {{"a", a.address()}, {"b", b.address()}},
                                   "[cluster.health]\ninterval = \"200ms\"\ntimeout = \"150ms\"\n"
                                   "rise = 2\nfall = 3\nsend = \"PING\\r\\n\"\nexpect = \"PING\"\n"));
  const auto& rt = node_state(harness, "a");
  ASSERT_TRUE(eventually([&] { return rt.last_check_ns.load() != 0; }, 5s));
  EXPECT_EQ(rt.last_check.load(), balance::CheckResult::ok);
  EXPECT_FALSE(rt.check_down.load());

  // Greets and closes without echoing: the reply lacks "PING".
  a.set_mode(BackendMode::greet_then_fin);
  const auto mismatches = [&] {
    return rt.check_failures[static_cast<std::size_t>(balance::CheckResult::mismatch)].load();
  };
  ASSERT_TRUE(eventually([&] { return rt.check_down.load(); }, 10s));
  EXPECT_GE(mismatches(), 3U);
  expect_check_failure_in_status(harness, "a", "mismatch", "got \"a");
  const int accepted_before = a.accepted();
  Tally tally;
  for (int i = 0; i < 6; ++i) ++tally[served_by(harness.address("pool"))];
  EXPECT_EQ(tally, (Tally{{"b", 6}}));

  a.set_mode(BackendMode::greet_echo);
  ASSERT_TRUE(eventually([&] { return !rt.check_down.load(); }, 10s));
  EXPECT_GE(rt.checks_passed_in_row.load(), 2U);
  EXPECT_GT(a.accepted(), accepted_before);  // only checks reached it meanwhile
  Tally after;
  for (int i = 0; i < 4; ++i) ++after[served_by(harness.address("pool"))];
  EXPECT_EQ(after, (Tally{{"a", 2}, {"b", 2}}));
}

TEST(Health, ReloadWithoutChecksReleasesTheNodesTheyTookOut) {
  // Verifies that when a reload removes [cluster.health], a node its checks had taken out takes
  // clients again (the verdict of checks that no longer run does not hold), and the reload
  // lists the change.
  Backend a("a", BackendMode::greet_then_fin);  // greets and closes: the check wants "PING"
  Backend b("b", BackendMode::greet_echo);
  const std::vector<NodeSpec> nodes{{"a", a.address()}, {"b", b.address()}};
  RuntimeHarness harness(pool_toml("", nodes,
                                   "[cluster.health]\ninterval = \"100ms\"\ntimeout = \"100ms\"\n"
                                   "fall = 1\nsend = \"PING\"\nexpect = \"PING\"\n"));
  ASSERT_TRUE(eventually([&] { return node_state(harness, "a").check_down.load(); }, 5s));
  EXPECT_EQ(tally_of(harness, 2), (Tally{{"b", 2}}));

  std::ofstream(harness.runtime().config()->file) << pool_toml("", nodes);
  const control::ReloadResult reloaded = harness.runtime().reload();
  ASSERT_TRUE(reloaded.ok) << (reloaded.errors.empty() ? "" : reloaded.errors.front());
  ASSERT_EQ(reloaded.changes.size(), 1U);
  EXPECT_EQ(reloaded.changes.front(), "cluster pool health checks, agent or slow start changed");
  ASSERT_TRUE(eventually([&] { return !node_state(harness, "a").check_down.load(); }, 5s));
  EXPECT_EQ(tally_of(harness, 2), (Tally{{"a", 1}, {"b", 1}}));
}

TEST(Health, ChecksAreSpreadOverTheIntervalAndRepeatEveryInterval) {
  // Verifies that four nodes' first checks are spread over the interval (1.2 s: about 300 ms
  // apart, in node order), not made at once, and each node is checked again every interval.
  std::vector<std::unique_ptr<Backend>> nodes;
  std::vector<NodeSpec> specs;
  for (const char* name : {"a", "b", "c", "d"}) {
    nodes.push_back(std::make_unique<Backend>(name, BackendMode::hold));
    specs.push_back({name, nodes.back()->address()});
  }
  const auto start = Clock::now();
  RuntimeHarness harness(pool_toml("", specs, "[cluster.health]\ninterval = \"1200ms\"\n"));
  std::vector<Clock::duration> first(4, Clock::duration::zero());
  ASSERT_TRUE(eventually(
      [&] {
        bool all = true;
        for (std::size_t i = 0; i < 4; ++i) {
          if (first[i] == Clock::duration::zero() && nodes[i]->accepted() > 0) {
            first[i] = Clock::now() - start;
          }
          all = all && first[i] != Clock::duration::zero();
        }
        return all;
      },
      10s));
  EXPECT_LT(first[0], first[1]);
  EXPECT_LT(first[1], first[2]);
  EXPECT_LT(first[2], first[3]);
  EXPECT_GE(first[3] - first[0], 600ms);  // 900 ms when on time
  // Three more intervals: 3 or 4 more checks each (bounded both ways: one place checks).
  const auto counted_from = Clock::now();
  std::vector<int> base;
  for (const auto& n : nodes) base.push_back(n.get()->accepted());
  ASSERT_TRUE(eventually([&] { return Clock::now() - counted_from >= 3600ms; }, 5s));
  for (std::size_t i = 0; i < 4; ++i) {
    const int checks = nodes[i]->accepted() - base[i];
    EXPECT_GE(checks, 2) << i;
    EXPECT_LE(checks, 4) << i;
  }
}

// --- Agent ---------------------------------------------------------------------------------

// Two nodes on their own loopback addresses (127.0.0.2, 127.0.0.3), each with an agent on the
// same port, as on two hosts.
struct AgentPool {
  AgentPool(const std::string& a_reply, const std::string& b_reply)
      : a("a", BackendMode::greet_echo, "127.0.0.2"),
        b("b", BackendMode::greet_echo, "127.0.0.3"),
        agent_a("127.0.0.2", 0, a_reply),
        agent_b("127.0.0.3", agent_a.port(), b_reply) {}

  std::string toml(const std::string& settings) const {
    return pool_toml(settings, {{"a", a.address()}, {"b", b.address()}},
                     "[cluster.agent]\nport = " + std::to_string(agent_a.port()) +
                         "\ninterval = \"100ms\"\ntimeout = \"500ms\"\n");
  }
  bool ready() const { return agent_a.port() != 0 && agent_b.port() == agent_a.port(); }

  Backend a;
  Backend b;
  AgentStub agent_a;
  AgentStub agent_b;
};

TEST(Health, AgentDrainMaintDownAndUp) {
  // Verifies the agent's words: drain and down keep new clients away, maint also closes the
  // node's connections, ready and up bring it back; the operator's state is kept apart.
  AgentPool pool("up ready", "up ready");
  ASSERT_TRUE(pool.ready()) << "cannot bind the agents on 127.0.0.2/3";
  RuntimeHarness harness(pool.toml(""));
  const auto& rt = node_state(harness, "a");
  ASSERT_TRUE(eventually([&] {
    std::lock_guard lock(rt.agent_mutex);
    return rt.agent_values_ns != 0;
  }, 5s));

  pool.agent_a.set_reply("drain");
  ASSERT_TRUE(eventually([&] { return rt.agent_state.load() == config::AdminState::draining; }, 5s));
  EXPECT_EQ(rt.admin_state.load(), config::AdminState::available);
  EXPECT_EQ(tally_of(harness, 4), (Tally{{"b", 4}}));

  pool.agent_a.set_reply("ready");
  ASSERT_TRUE(eventually([&] { return rt.agent_state.load() == config::AdminState::available; }, 5s));
  EXPECT_EQ(tally_of(harness, 4), (Tally{{"a", 2}, {"b", 2}}));

  pool.agent_a.set_reply("down");
  ASSERT_TRUE(eventually([&] { return rt.agent_down.load(); }, 5s));
  EXPECT_EQ(tally_of(harness, 4), (Tally{{"b", 4}}));
  pool.agent_a.set_reply("up");
  ASSERT_TRUE(eventually([&] { return !rt.agent_down.load(); }, 5s));
  EXPECT_EQ(tally_of(harness, 4), (Tally{{"a", 2}, {"b", 2}}));

  // maint: a held connection to a is closed, and a takes no new client.
  Client held;
  for (int i = 0; i < 2 && held.fd() < 0; ++i) {
    Client c(harness.address("pool"), 5s);
    if (c.recv_line(in(5s)) == "a") held = std::move(c);
  }
  ASSERT_GE(held.fd(), 0);
  pool.agent_a.set_reply("maint");
  EXPECT_NE(held.wait_closed(in(5s)), PeerClose::timeout);
  EXPECT_EQ(rt.effective_state(), config::AdminState::offline);
  EXPECT_EQ(tally_of(harness, 3), (Tally{{"b", 3}}));
  // The operator's offline holds whatever the agent says.
  ASSERT_TRUE(harness.set_node_state("pool", "a", config::AdminState::offline));
  pool.agent_a.set_reply("ready up");
  ASSERT_TRUE(eventually([&] { return rt.agent_state.load() == config::AdminState::available; }, 5s));
  EXPECT_EQ(tally_of(harness, 3), (Tally{{"b", 3}}));
}

TEST(Health, AgentWeightPercentScalesTheShare) {
  // Verifies "25%" makes a node's load factor a quarter: round robin then sends it one client
  // in five (2 of 10) while the other node reports 100%.
  AgentPool pool("25%", "100%");
  ASSERT_TRUE(pool.ready()) << "cannot bind the agents on 127.0.0.2/3";
  RuntimeHarness harness(pool.toml(""));
  ASSERT_TRUE(eventually([&] { return node_state(harness, "a").agent_weight_percent.load() == 25; },
                         5s));
  EXPECT_EQ(tally_of(harness, 10), (Tally{{"a", 2}, {"b", 8}}));
}

TEST(Health, LoadRatingOnAgentValuesPicksTheLeastLoadedNode) {
  // Verifies min_load with an expression over an agent value: the next client goes to the node
  // reporting the lowest load, and follows when the reports change.
  AgentPool pool("cpu=0.9", "cpu=0.2");
  ASSERT_TRUE(pool.ready()) << "cannot bind the agents on 127.0.0.2/3";
  RuntimeHarness harness(pool.toml("algorithm = \"min_load\"\nload_rating = \"cpu * 100 + connections\""));
  const auto reported = [&](const std::string& node, double value) {
    return node_state(harness, node).agent_value("cpu", 0) == value;
  };
  ASSERT_TRUE(eventually([&] { return reported("a", 0.9) && reported("b", 0.2); }, 5s));
  EXPECT_EQ(tally_of(harness, 3), (Tally{{"b", 3}}));
  pool.agent_a.set_reply("cpu=0.1");
  ASSERT_TRUE(eventually([&] { return reported("a", 0.1); }, 5s));
  EXPECT_EQ(tally_of(harness, 3), (Tally{{"a", 3}}));
}

// --- Slow start --------------------------------------------------------------------------------

TEST(Health, SlowStartRampsANodeBackIn) {
  // Verifies that a node set available again under slow_start takes a small share at first
  // and its equal share once the ramp is over (proportions over windows, not exact timings).
  Backend a("a", BackendMode::greet_echo);
  Backend b("b", BackendMode::greet_echo);
  RuntimeHarness harness(pool_toml("slow_start = \"8s\"", {{"a", a.address()}, {"b", b.address()}}));
  // Present at start: full weight at once.
  EXPECT_EQ(tally_of(harness, 4), (Tally{{"a", 2}, {"b", 2}}));
  ASSERT_TRUE(harness.set_node_state("pool", "a", config::AdminState::draining));
  ASSERT_TRUE(harness.set_node_state("pool", "a", config::AdminState::available));
  const Tally early = tally_of(harness, 10);
  // Early in the ramp a's factor is 0.1 and some: well below its equal share of 5 in 10.
  EXPECT_LE(early.count("a") ? early.at("a") : 0, 3) << "a got too much too soon";
  ASSERT_TRUE(eventually([&] {
    return harness.runtime().snapshot()->clusters.at("pool")->effective_load_factor(
               0, std::chrono::duration_cast<std::chrono::nanoseconds>(
                      Clock::now().time_since_epoch()).count()) >= 1.0;
  }, 10s));
  // Full weight again: about half (the round robin may first pay back a little credit).
  const Tally late = tally_of(harness, 20);
  EXPECT_GE(late.count("a") ? late.at("a") : 0, 8);
  EXPECT_LE(late.count("a") ? late.at("a") : 0, 12);
}

}  // namespace
}  // namespace pb::test
