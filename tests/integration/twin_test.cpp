// End-to-end tests of twin deployments ([twin]): a real redis-server (loopback, no persistence)
// and two or three real balancer processes sharing it, real backends, real clients from
// distinct loopback addresses, and the real pbadmin.
#include <signal.h>

#include <atomic>
#include <map>
#include <memory>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include "protobalance/affinity/client_key.hpp"
#include "support/backend.hpp"
#include "support/client.hpp"
#include "support/eventually.hpp"
#include "support/process.hpp"
#include "support/redis_server.hpp"
#include "support/scrape.hpp"

namespace pb::test {
namespace {

namespace json = boost::json;

// One balancer of a twin deployment: its folder (configuration, state), its process.
struct Twin {
  std::string instance;
  TempDir dir;
  std::filesystem::path file;
  std::unique_ptr<Balancer> balancer;

  std::string address() const { return balancer->address("l"); }
};

bool connected(const Twin& twin);  // its link to Redis is up (status)

// Backends a and b (they greet with their name), and the configuration every twin shares:
// cluster web, least_connections with affinity on, so that the algorithm alone follows each
// balancer's own load and two balancers would choose differently for the same client (on a tie
// a fresh balancer takes a, then rotates); listeners l and m lead to it. Cluster other (node b,
// affinity on; node loads are per cluster) behind listener o carries background traffic.
struct TwinFixture {
  Backend a{"a", BackendMode::greet_echo};
  Backend b{"b", BackendMode::greet_echo};

  std::string toml(const std::string& instance, const std::string& redis,
                   const std::string& twin_extra = "",
                   const std::string& lookup_timeout = "2s") const {
    return fmt::format(
        "[service]\nthreads = 1\nstate_dir = \"state\"\n"
        "[[listener]]\nname = \"l\"\nlisten = \"127.0.0.1:0\"\ncluster = \"web\"\n"
        "[[listener]]\nname = \"m\"\nlisten = \"127.0.0.1:0\"\ncluster = \"web\"\n"
        "[[listener]]\nname = \"o\"\nlisten = \"127.0.0.1:0\"\ncluster = \"other\"\n"
        "[[cluster]]\nname = \"web\"\nalgorithm = \"least_connections\"\n"
        "[cluster.affinity]\nenabled = true\nttl = \"1h\"\n"
        "[[cluster.node]]\nname = \"a\"\naddress = \"{}\"\n"
        "[[cluster.node]]\nname = \"b\"\naddress = \"{}\"\n"
        "[[cluster]]\nname = \"other\"\n[cluster.affinity]\nenabled = true\n"
        "[[cluster.node]]\nname = \"b\"\naddress = \"{}\"\n"
        // A generous lookup timeout: the machine running the tests may be busy.
        "[twin]\nredis = \"{}\"\ninstance = \"{}\"\nlookup_timeout = \"{}\"\n{}",
        a.address(), b.address(), b.address(), redis, instance, lookup_timeout, twin_extra);
  }

  std::unique_ptr<Twin> start(const std::string& instance, const RedisServer& redis,
                              const std::string& twin_extra = "") const {
    auto twin = std::make_unique<Twin>();
    twin->instance = instance;
    twin->file = twin->dir.write("pb.toml", toml(instance, redis.address(), twin_extra));
    twin->balancer =
        std::make_unique<Balancer>(std::vector<std::string>{"--config", twin->file.string()});
    return twin;
  }

  // Starts twins A (with `a_extra` in its configuration) and B on `redis`; true once both are
  // connected to it (within a deadline).
  bool start_pair(const RedisServer& redis, std::unique_ptr<Twin>& twin_a,
                  std::unique_ptr<Twin>& twin_b, const std::string& a_extra = "") const {
    twin_a = start("A", redis, a_extra);
    twin_b = start("B", redis);
    return eventually([&] { return connected(*twin_a) && connected(*twin_b); }, in(20s));
  }
};

// Which node serves one connection from `source` (127.0.0.x): its greeting.
std::string served(const std::string& address, const std::string& source) {
  Client client(address, 5s, source);
  if (!client.connected()) return "<" + client.error() + ">";
  return client.recv_line(in(5s));
}

// A connection from `source` that stays open (it loads its node for least_connections).
struct Held {
  Client client;
  std::string node;
};
Held hold(const std::string& address, const std::string& source) {
  Held held{Client(address, 5s, source), {}};
  held.node =
      held.client.connected() ? held.client.recv_line(in(5s)) : "<" + held.client.error() + ">";
  return held;
}

std::string source(int i) { return "127.0.0." + std::to_string(10 + i); }

RunResult pbadmin(const Twin& twin, std::vector<std::string> args) {
  args.insert(args.begin(), {binary("pbadmin"), "--config", twin.file.string()});
  return run(args);
}

json::value status_json(const Twin& twin) {
  const auto result = pbadmin(twin, {"--json", "status"});
  if (result.exit_code != 0) return nullptr;
  const auto start = result.output.find('{');
  if (start == std::string::npos) return nullptr;
  boost::system::error_code ec;
  auto value = json::parse(result.output.substr(start), ec);
  return ec ? json::value(nullptr) : value;
}

// The twin object of `pbadmin status --json`.
json::object twin_status(const Twin& twin) {
  const auto status = status_json(twin);
  if (!status.is_object()) return {};
  const auto* t = status.as_object().if_contains("twin");
  return t != nullptr && t->is_object() ? t->as_object() : json::object{};
}

bool connected(const Twin& twin) {
  const auto t = twin_status(twin);
  const auto* c = t.if_contains("connected");
  const auto* s = t.if_contains("subscribed");
  return c != nullptr && c->is_bool() && c->as_bool() && s != nullptr && s->is_bool() &&
         s->as_bool();
}

// The node `pbadmin affinity list` shows for the client (it reads the twin's SQLite file), or
// "" when it lists none.
std::string listed_node(const Twin& twin, const std::string& client) {
  const auto result = pbadmin(twin, {"--json", "affinity", "list", "--client", client});
  const auto start = result.output.find('[');
  if (result.exit_code != 0 || start == std::string::npos) return "<error>";
  boost::system::error_code ec;
  auto rows = json::parse(result.output.substr(start), ec);
  if (ec || !rows.is_array() || rows.as_array().empty()) return "";
  return std::string(rows.as_array()[0].as_object().at("node").as_string());
}

std::string node_state(const Twin& twin, const std::string& node) {
  const auto status = status_json(twin);
  if (!status.is_object()) return "<no status>";
  for (const auto& cluster : status.as_object().at("clusters").as_array()) {
    if (cluster.as_object().at("name").as_string() != "web") continue;
    for (const auto& n : cluster.as_object().at("nodes").as_array()) {
      if (n.as_object().at("name").as_string() == node) {
        return std::string(n.as_object().at("state").as_string());
      }
    }
  }
  return "<no node>";
}

std::string listener_cluster(const Twin& twin, const std::string& listener) {
  const auto status = status_json(twin);
  if (!status.is_object()) return "<no status>";
  for (const auto& l : status.as_object().at("listeners").as_array()) {
    if (l.as_object().at("name").as_string() == listener) {
      return std::string(l.as_object().at("cluster").as_string());
    }
  }
  return "<no listener>";
}

// redis-cli against the test's server; its output.
std::string redis_cli(const RedisServer& redis, std::vector<std::string> args) {
  args.insert(args.begin(),
              {"/usr/bin/redis-cli", "-h", "127.0.0.1", "-p", std::to_string(redis.port())});
  return run(args).output;
}

// The Redis key of a client's affinity entry in cluster web (the twin link's wire format).
std::string affinity_key(const std::string& client) {
  const auto key = affinity::parse_client(client);
  std::string hex;
  for (const std::uint8_t byte : key->to_blob()) hex += fmt::format("{:02x}", byte);
  return "protobalance:a:web:" + hex;
}

// The node of the client's entry in Redis ("" when there is none).
std::string redis_node(const RedisServer& redis, const std::string& client) {
  const std::string value = redis_cli(redis, {"GET", affinity_key(client)});
  // "1 NODE LAST_SEEN INSTANCE"
  const auto first = value.find(' ');
  if (value.rfind("1 ", 0) != 0 || first == std::string::npos) return "";
  const auto second = value.find(' ', first + 1);
  return value.substr(first + 1, second - first - 1);
}

TEST(Twin, AffinityChosenThroughOneIsHonouredThroughAnother) {
  // Verifies that a client whose node balancer A chose is sent to that node by balancer B,
  // although B's least_connections alone would choose the other node (B's own load differs):
  // shown by a new client that B does send to the other node.
  RedisServer redis;
  ASSERT_TRUE(redis.ready());
  TwinFixture f;
  std::unique_ptr<Twin> A, B;
  ASSERT_TRUE(f.start_pair(redis, A, B));

  // B: node a carries one open connection, so B alone sends a new client to b.
  Held load = hold(B->address(), source(30));
  ASSERT_EQ(load.node, "a");
  // A (no load) sends the client to a, its first node on a tie.
  ASSERT_EQ(served(A->address(), source(0)), "a");
  ASSERT_TRUE(eventually([&] { return redis_node(redis, source(0)) == "a"; }, in(10s)))
      << "A's decision never reached Redis";

  EXPECT_EQ(served(B->address(), source(0)), "a") << "B did not honour A's decision";
  EXPECT_EQ(served(B->address(), source(1)), "b") << "B's algorithm alone should choose b";
  EXPECT_EQ(served(B->address(), source(0)), "a");
  // B keeps what it learned in its own database.
  EXPECT_TRUE(eventually([&] { return listed_node(*B, source(0)) == "a"; }, in(10s)));
}

TEST(Twin, ClientUnknownLocallyIsLookedUpInRedis) {
  // Verifies the lookup of a first-seen client: an entry written into Redis behind the
  // balancer's back (no message, so its map does not have it) is found when the client
  // connects, and honoured against the algorithm's choice; the lookup is counted as a hit.
  RedisServer redis;
  ASSERT_TRUE(redis.ready());
  TwinFixture f;
  auto B = f.start("B", redis);
  ASSERT_TRUE(eventually([&] { return connected(*B); }, in(20s)));
  const auto now = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  // Fresh, B would choose a (its first node on a tie).
  ASSERT_EQ(redis_cli(redis, {"SET", affinity_key(source(2)), fmt::format("1 b {} elsewhere", now),
                              "EX", "3600"}),
            "OK\n");
  EXPECT_EQ(served(B->address(), source(2)), "b");
  const auto t = twin_status(*B);
  ASSERT_TRUE(t.contains("lookups"));
  EXPECT_EQ(t.at("lookups").as_object().at("hit").to_number<std::int64_t>(), 1);
  // A client nobody knows: a miss, and B's own choice is published.
  EXPECT_EQ(served(B->address(), source(3)), "a");
  EXPECT_TRUE(eventually([&] { return redis_node(redis, source(3)) == "a"; }, in(10s)));
}

TEST(Twin, TwinStartedLaterLearnsExistingEntries) {
  // Verifies that a balancer started after the decisions were made sends each client to the
  // node chosen before (its own first choice for a new client would be a for both), and keeps
  // the entries in its database.
  RedisServer redis;
  ASSERT_TRUE(redis.ready());
  TwinFixture f;
  auto A = f.start("A", redis);
  ASSERT_TRUE(eventually([&] { return connected(*A); }, in(20s)));
  ASSERT_EQ(served(A->address(), source(0)), "a");
  ASSERT_EQ(served(A->address(), source(1)), "b");  // tie broken by rotation
  ASSERT_TRUE(eventually([&] { return redis_node(redis, source(1)) == "b"; }, in(10s)));

  auto C = f.start("C", redis);
  ASSERT_TRUE(eventually([&] { return connected(*C); }, in(20s)));
  EXPECT_EQ(served(C->address(), source(1)), "b");
  EXPECT_EQ(served(C->address(), source(0)), "a");
  EXPECT_TRUE(eventually([&] { return listed_node(*C, source(1)) == "b"; }, in(10s)));
  EXPECT_TRUE(eventually([&] { return listed_node(*C, source(0)) == "a"; }, in(10s)));
}

TEST(Twin, NodeStateAndRouteSetOnOneApplyOnAll) {
  // Verifies that `pbadmin node set` and `pbadmin route` (and --reset) on one balancer apply on
  // its twins, and that a twin started later finds the state, while a probe's finding stays
  // local.
  RedisServer redis;
  ASSERT_TRUE(redis.ready());
  TwinFixture f;
  std::unique_ptr<Twin> A, B;
  ASSERT_TRUE(f.start_pair(redis, A, B));

  ASSERT_EQ(pbadmin(*A, {"node", "set", "web", "a", "draining"}).exit_code, 0);
  EXPECT_TRUE(eventually([&] { return node_state(*B, "a") == "draining"; }, in(10s)))
      << B->balancer->process().output();
  // New clients through B avoid the draining node.
  for (int i = 0; i < 3; ++i) EXPECT_EQ(served(B->address(), source(40 + i)), "b");

  auto C = f.start("C", redis);
  EXPECT_TRUE(eventually([&] { return node_state(*C, "a") == "draining"; }, in(20s)));

  ASSERT_EQ(pbadmin(*B, {"node", "set", "web", "a", "available"}).exit_code, 0);
  EXPECT_TRUE(eventually([&] { return node_state(*A, "a") == "available"; }, in(10s)));
  EXPECT_TRUE(eventually([&] { return node_state(*C, "a") == "available"; }, in(10s)));

  ASSERT_EQ(pbadmin(*A, {"route", "m", "other"}).exit_code, 0);
  EXPECT_TRUE(eventually([&] { return listener_cluster(*B, "m") == "other"; }, in(10s)));
  EXPECT_TRUE(eventually([&] { return listener_cluster(*C, "m") == "other"; }, in(10s)));
  ASSERT_EQ(pbadmin(*C, {"route", "m", "--reset"}).exit_code, 0);
  EXPECT_TRUE(eventually([&] { return listener_cluster(*A, "m") == "web"; }, in(10s)));
  EXPECT_TRUE(eventually([&] { return listener_cluster(*B, "m") == "web"; }, in(10s)));
}

TEST(Twin, ClientMovedOffADrainedNodeMovesOnEveryTwin) {
  // Verifies that a client moved by one balancer because its node drains (a change of an
  // existing entry, not a first decision) is moved on the twin too, and stays moved when the
  // node is available again.
  RedisServer redis;
  ASSERT_TRUE(redis.ready());
  TwinFixture f;
  std::unique_ptr<Twin> A, B;
  ASSERT_TRUE(f.start_pair(redis, A, B));
  ASSERT_EQ(served(A->address(), source(0)), "a");
  ASSERT_TRUE(eventually([&] { return listed_node(*B, source(0)) == "a"; }, in(10s)));

  ASSERT_EQ(pbadmin(*A, {"node", "set", "web", "a", "draining"}).exit_code, 0);
  ASSERT_TRUE(eventually([&] { return node_state(*B, "a") == "draining"; }, in(10s)));
  EXPECT_EQ(served(A->address(), source(0)), "b");
  EXPECT_TRUE(eventually([&] { return redis_node(redis, source(0)) == "b"; }, in(10s)));
  EXPECT_TRUE(eventually([&] { return listed_node(*B, source(0)) == "b"; }, in(10s)));

  ASSERT_EQ(pbadmin(*B, {"node", "set", "web", "a", "available"}).exit_code, 0);
  ASSERT_TRUE(eventually([&] { return node_state(*A, "a") == "available"; }, in(10s)));
  EXPECT_EQ(served(B->address(), source(0)), "b");
  EXPECT_EQ(served(A->address(), source(0)), "b");
  EXPECT_EQ(listed_node(*A, source(0)), "b");
}

TEST(Twin, RedisKilledAndRestartedMidRun) {
  // Verifies that while Redis is killed and restarted empty, clients connecting through both
  // balancers all get served, and that what was decided before and during the outage is in
  // Redis again afterwards and honoured by the twin (whose algorithm would choose otherwise).
  RedisServer redis;
  ASSERT_TRUE(redis.ready());
  TwinFixture f;
  std::unique_ptr<Twin> A, B;
  ASSERT_TRUE(f.start_pair(redis, A, B));
  ASSERT_EQ(served(A->address(), source(0)), "a");
  ASSERT_TRUE(eventually([&] { return redis_node(redis, source(0)) == "a"; }, in(10s)));

  // Clients keep connecting through both balancers for the whole outage (to cluster other,
  // whose node loads are apart from web's).
  std::atomic<bool> done{false};
  std::atomic<int> served_count{0};
  std::atomic<int> failed{0};
  std::string first_failure;
  const std::string through_a = A->balancer->address("o");
  const std::string through_b = B->balancer->address("o");
  std::thread clients([&] {
    for (int i = 0; !done.load(); ++i) {
      const std::string node = served(i % 2 == 0 ? through_a : through_b, source(100 + i % 50));
      if (node == "b") {
        ++served_count;
      } else if (failed++ == 0) {
        first_failure = node;
      }
    }
  });

  redis.kill();
  ASSERT_TRUE(eventually([&] { return !connected(*A) && !connected(*B); }, in(20s)));
  // Decided by A alone; then B (fresh in web) is loaded so that alone it would choose the other
  // node: one open connection on a (its first choice); if A chose b, one more (it goes to b),
  // and the tie then goes to a by rotation.
  const std::string decided = served(A->address(), source(5));
  ASSERT_TRUE(decided == "a" || decided == "b") << decided;
  std::vector<Held> load;
  load.push_back(hold(B->address(), source(60)));
  ASSERT_EQ(load.back().node, "a");
  if (decided == "b") {
    load.push_back(hold(B->address(), source(61)));
    ASSERT_EQ(load.back().node, "b");
  }

  ASSERT_TRUE(redis.restart());
  EXPECT_TRUE(eventually([&] { return connected(*A) && connected(*B); }, in(30s)));
  // Both the old entry and the one decided meanwhile are published again.
  EXPECT_TRUE(eventually([&] { return redis_node(redis, source(5)) == decided; }, in(20s)));
  EXPECT_TRUE(eventually([&] { return redis_node(redis, source(0)) == "a"; }, in(20s)));
  done = true;
  clients.join();
  EXPECT_EQ(failed.load(), 0) << "first failure: " << first_failure;
  EXPECT_GT(served_count.load(), 4);
  EXPECT_EQ(served(B->address(), source(5)), decided) << "B did not learn what A decided alone";
}

TEST(Twin, ConcurrentFirstConnectionsOfOneClientConverge) {
  // Verifies that one new client connecting through two balancers at once, each of which would
  // choose a different node alone, ends up on one node through both.
  RedisServer redis;
  ASSERT_TRUE(redis.ready());
  TwinFixture f;
  std::unique_ptr<Twin> A, B;
  ASSERT_TRUE(f.start_pair(redis, A, B));
  Held load = hold(B->address(), source(30));  // B alone chooses b, A alone chooses a
  ASSERT_EQ(load.node, "a");

  // Both connections are open before either greeting is read.
  Client through_a(A->address(), 5s, source(7));
  Client through_b(B->address(), 5s, source(7));
  const std::string first_a = through_a.recv_line(in(5s));
  const std::string first_b = through_b.recv_line(in(5s));
  ASSERT_TRUE(first_a == "a" || first_a == "b") << first_a;
  ASSERT_TRUE(first_b == "a" || first_b == "b") << first_b;

  std::string on_a;
  std::string on_b;
  EXPECT_TRUE(eventually(
      [&] {
        on_a = served(A->address(), source(7));
        on_b = served(B->address(), source(7));
        return on_a == on_b;
      },
      in(10s)))
      << "A sends it to " << on_a << ", B to " << on_b;
  // And it stays so.
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(served(A->address(), source(7)), on_a);
    EXPECT_EQ(served(B->address(), source(7)), on_a);
  }
  EXPECT_EQ(redis_node(redis, source(7)), on_a);
}

TEST(Twin, AffinityPinAndForgetActOnEveryTwin) {
  // Verifies that `pbadmin affinity pin` on one balancer moves the client on its twin (and in
  // the twin's database), and `pbadmin affinity forget` on the twin removes it everywhere.
  RedisServer redis;
  ASSERT_TRUE(redis.ready());
  TwinFixture f;
  std::unique_ptr<Twin> A, B;
  ASSERT_TRUE(f.start_pair(redis, A, B));
  ASSERT_EQ(served(A->address(), source(0)), "a");
  ASSERT_TRUE(eventually([&] { return listed_node(*B, source(0)) == "a"; }, in(10s)));

  ASSERT_EQ(pbadmin(*A, {"affinity", "pin", source(0), "b", "--cluster", "web"}).exit_code, 0);
  EXPECT_TRUE(eventually([&] { return listed_node(*B, source(0)) == "b"; }, in(10s)));
  EXPECT_EQ(served(B->address(), source(0)), "b");
  EXPECT_EQ(redis_node(redis, source(0)), "b");

  const auto forget = pbadmin(*B, {"affinity", "forget", source(0), "--cluster", "web"});
  ASSERT_EQ(forget.exit_code, 0) << forget.output;
  EXPECT_TRUE(eventually([&] { return listed_node(*A, source(0)).empty(); }, in(10s)));
  EXPECT_TRUE(eventually([&] { return redis_node(redis, source(0)).empty(); }, in(10s)));
}

TEST(Twin, WrongPasswordIsAClearErrorAndForwardingGoesOn) {
  // Verifies that a balancer whose password Redis refuses logs a clear error at start, shows it
  // in its status, and forwards alone.
  RedisServer redis("right-password");
  ASSERT_TRUE(redis.ready());
  TwinFixture f;
  auto twin = std::make_unique<Twin>();
  const auto password = twin->dir.write("redis.pass", "wrong-password\n");
  twin->file = twin->dir.write(
      "pb.toml",
      f.toml("A", redis.address(), fmt::format("password_file = \"{}\"\n", password.string())));
  twin->balancer =
      std::make_unique<Balancer>(std::vector<std::string>{"--config", twin->file.string()});
  EXPECT_TRUE(twin->balancer->process().wait_for(std::regex("refused the password"), in(10s)))
      << twin->balancer->process().output();
  EXPECT_EQ(served(twin->address(), source(0)), "a");
  const auto t = twin_status(*twin);
  ASSERT_TRUE(t.contains("connected")) << json::serialize(t);
  EXPECT_FALSE(t.at("connected").as_bool());
  EXPECT_NE(std::string(t.at("last_error").as_string()).find("refused the password"),
            std::string::npos)
      << json::serialize(t);
  const auto text = pbadmin(*twin, {"status"});
  EXPECT_NE(text.output.find("not connected"), std::string::npos) << text.output;
}

TEST(Twin, FrozenRedisDelaysFirstSeenClientsByLookupTimeoutOnly) {
  // Verifies that while Redis is frozen (SIGSTOP: connections open, nothing answers), a
  // first-seen client is served after lookup_timeout by the balancer alone, a client that
  // closes while its lookup is out leaves the balancer unharmed, and a known client is served
  // at once.
  RedisServer redis;
  ASSERT_TRUE(redis.ready());
  TwinFixture f;
  auto twin = std::make_unique<Twin>();
  twin->instance = "A";
  // Cluster other closes connections idle for 100 ms: also one still waiting for its lookup.
  std::string text = f.toml("A", redis.address(), "", "300ms");
  const std::string other = "[[cluster]]\nname = \"other\"\n";
  text.replace(text.find(other), other.size(), other + "idle_timeout = \"100ms\"\n");
  twin->file = twin->dir.write("pb.toml", text);
  twin->balancer =
      std::make_unique<Balancer>(std::vector<std::string>{"--config", twin->file.string()});
  ASSERT_TRUE(eventually([&] { return connected(*twin); }, in(20s)));
  ASSERT_EQ(served(twin->address(), source(0)), "a");  // known from now on

  redis.pause();
  {
    // Connects and goes away while its lookup waits.
    Client gone(twin->address(), 5s, source(1));
    ASSERT_TRUE(gone.connected());
  }
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(served(twin->address(), source(0)), "a");
  const auto known = std::chrono::steady_clock::now() - started;
  EXPECT_LT(known, 250ms) << "a known client waited for Redis";
  const auto first_seen_started = std::chrono::steady_clock::now();
  const std::string node = served(twin->address(), source(2));
  const auto first_seen = std::chrono::steady_clock::now() - first_seen_started;
  EXPECT_TRUE(node == "a" || node == "b") << node;
  EXPECT_GE(first_seen, 250ms) << "the lookup did not wait";
  EXPECT_LT(first_seen, 3s) << "waited far beyond lookup_timeout";
  {
    // Closed by the balancer (idle) while its lookup is out; the late answer finds nobody.
    Client closed(twin->balancer->address("o"), 5s, source(4));
    ASSERT_TRUE(closed.connected());
    EXPECT_NE(closed.wait_closed(in(5s)), PeerClose::timeout);
  }
  // The lookup's late answer (a timeout: the third) has reached the worker.
  EXPECT_TRUE(eventually(
      [&] {
        const auto t = twin_status(*twin);
        const auto* lookups = t.if_contains("lookups");
        return lookups != nullptr &&
               lookups->as_object().at("timeout").to_number<std::int64_t>() >= 3;
      },
      in(10s)));
  redis.resume();

  EXPECT_TRUE(twin->balancer->process().running()) << twin->balancer->process().output();
  EXPECT_EQ(served(twin->address(), source(2)), node);
  const std::string later = served(twin->address(), source(1));
  EXPECT_TRUE(later == "a" || later == "b") << later;
  EXPECT_TRUE(eventually([&] { return connected(*twin); }, in(20s)));
  const auto t = twin_status(*twin);
  EXPECT_GE(t.at("lookups").as_object().at("timeout").to_number<std::int64_t>(), 1);
}

TEST(Twin, ReloadKeepsTheLinkWhenTwinIsUnchangedAndRestartsItOtherwise) {
  // Verifies that a reload leaving [twin] as it is keeps the link (nothing listed, still
  // connected), and one that changes it restarts the link under the new instance name.
  RedisServer redis;
  ASSERT_TRUE(redis.ready());
  TwinFixture f;
  auto A = f.start("A", redis);
  ASSERT_TRUE(eventually([&] { return connected(*A); }, in(20s)));
  const std::string since = std::string(twin_status(*A).at("since").as_string());

  auto same = pbadmin(*A, {"reload"});
  ASSERT_EQ(same.exit_code, 0) << same.output;
  EXPECT_EQ(same.output.find("[twin]"), std::string::npos) << same.output;
  EXPECT_EQ(twin_status(*A).at("since").as_string(), since);
  EXPECT_TRUE(connected(*A));

  A->dir.write("pb.toml", f.toml("A2", redis.address()));
  auto changed = pbadmin(*A, {"reload"});
  ASSERT_EQ(changed.exit_code, 0) << changed.output;
  EXPECT_NE(changed.output.find("[twin] link to " + redis.address() + " (re)started"),
            std::string::npos)
      << changed.output;
  EXPECT_TRUE(eventually([&] { return connected(*A); }, in(20s)));
  EXPECT_EQ(twin_status(*A).at("instance").as_string(), "A2");
  // The new link shares: a decision made now reaches Redis under the new name.
  ASSERT_EQ(served(A->address(), source(3)), "a");
  EXPECT_TRUE(eventually(
      [&] {
        return redis_cli(redis, {"GET", affinity_key(source(3))}).find(" A2") != std::string::npos;
      },
      in(10s)));
}

TEST(Twin, StatusShowsTheLinkAndTheTwinsHeard) {
  // Verifies `pbadmin status` (text and --json) with [twin]: connected, since when, this
  // instance and the twins heard recently; and the twin metrics' values.
  RedisServer redis;
  ASSERT_TRUE(redis.ready());
  TwinFixture f;
  std::unique_ptr<Twin> A, B;
  ASSERT_TRUE(f.start_pair(redis, A, B, "[metrics]\nlisten = \"127.0.0.1:0\"\n"));
  ASSERT_EQ(served(A->address(), source(0)), "a");
  // B hears A once A published its decision.
  ASSERT_TRUE(eventually(
      [&] {
        const auto t = twin_status(*B);
        const auto* instances = t.if_contains("instances");
        return instances != nullptr && instances->is_array() && !instances->as_array().empty() &&
               instances->as_array()[0].as_object().at("instance").as_string() == "A";
      },
      in(10s)));
  const auto t = twin_status(*B);
  EXPECT_EQ(t.at("instance").as_string(), "B");
  EXPECT_TRUE(t.at("since").is_string());
  EXPECT_GE(t.at("messages_received").to_number<std::int64_t>(), 1);
  const auto a = twin_status(*A);
  EXPECT_GE(a.at("messages_sent").to_number<std::int64_t>(), 1);
  EXPECT_EQ(a.at("lookups").as_object().at("miss").to_number<std::int64_t>(), 1);

  const auto text = pbadmin(*B, {"status"});
  EXPECT_NE(text.output.find("twin B via Redis " + redis.address() + ": connected since"),
            std::string::npos)
      << text.output;
  EXPECT_NE(text.output.find("twins heard in the last 10 minutes: A ("), std::string::npos)
      << text.output;
  // The metrics, as Prometheus reads them (promtool accepts the exposition).
  const std::string address = metrics_address(*A->balancer);
  ASSERT_FALSE(address.empty()) << A->balancer->process().output();
  const auto body = http_get(address, "/metrics");
  ASSERT_TRUE(body);
  const Scrape scrape(*body);
  EXPECT_EQ(scrape("protobalance_twin_connected"), 1);
  EXPECT_GE(scrape(R"(protobalance_twin_messages_total{direction="sent"})"), 1);
  EXPECT_EQ(scrape(R"(protobalance_twin_lookups_total{result="miss"})"), 1);
  EXPECT_EQ(scrape(R"(protobalance_twin_lookups_total{result="hit"})"), 0);
  const auto file = A->dir.write("scrape.txt", scrape.text);
  const RunResult promtool =
      run({"/bin/sh", "-c", "promtool check metrics < '" + file.string() + "'"});
  EXPECT_EQ(promtool.exit_code, 0) << promtool.output;
}

// True when a connection from `source` is served by node a or b (their greeting arrives).
bool greeted(const std::string& address, const std::string& source) {
  const std::string node = served(address, source);
  return node == "a" || node == "b";
}

// A connection from `source` that the balancer closes without serving it (no greeting).
bool refused(const std::string& address, const std::string& source) {
  Client client(address, 5s, source);
  if (!client.connected()) return false;
  return client.recv_line(in(5s)).empty() && client.wait_closed(in(5s)) != PeerClose::timeout;
}

// The networks (with "@LISTENER" for one listener's) that `pbadmin blocks --json` lists from the
// twin's database.
std::set<std::string> listed_blocks(const Twin& twin) {
  const auto result = pbadmin(twin, {"--json", "blocks"});
  std::set<std::string> out;
  const auto start = result.output.find('[');
  if (result.exit_code != 0 || start == std::string::npos) return {"<error>"};
  boost::system::error_code ec;
  const auto rows = json::parse(result.output.substr(start), ec);
  if (ec || !rows.is_array()) return {"<error>"};
  for (const auto& row : rows.as_array()) {
    std::string entry(row.as_object().at("network").as_string());
    const auto& listener = row.as_object().at("listener");
    if (listener.is_string()) entry += "@" + std::string(listener.as_string());
    out.insert(entry);
  }
  return out;
}

TEST(Twin, BlockOnOneAppliesOnEveryTwin) {
  // Verifies that blocks go through Redis: a block made on A refuses the client on B, closes
  // the client's running connection on B and is kept in B's database; an unblock on B lets the
  // client back on A; a block of one listener stays on that listener on the twin; a twin started
  // later refuses the blocked client.
  RedisServer redis;
  ASSERT_TRUE(redis.ready());
  TwinFixture f;
  std::unique_ptr<Twin> A, B;
  ASSERT_TRUE(f.start_pair(redis, A, B));

  const std::string client = source(20);
  Held running = hold(B->address(), client);
  ASSERT_TRUE(running.node == "a" || running.node == "b") << running.node;
  // B's one message so far: its decision for the running client.
  const auto sent_by_b = [&] {
    const auto t = twin_status(*B);
    const auto* sent = t.if_contains("messages_sent");
    return sent != nullptr ? sent->to_number<std::int64_t>() : -1;
  };
  ASSERT_TRUE(eventually([&] { return sent_by_b() == 1; }, in(10s)));
  ASSERT_EQ(pbadmin(*A, {"block", client}).exit_code, 0);
  EXPECT_TRUE(refused(A->address(), client));
  ASSERT_TRUE(eventually([&] { return refused(B->address(), client); }, in(10s)));
  EXPECT_NE(running.client.wait_closed(in(10s)), PeerClose::timeout);
  EXPECT_EQ(sent_by_b(), 1);  // applied, not published again
  EXPECT_EQ(listed_blocks(*B), std::set<std::string>{client});
  EXPECT_TRUE(greeted(B->address(), source(21)));  // others are still served

  // One listener's block: on the twin too, only that listener refuses.
  const std::string other = source(22);
  ASSERT_EQ(pbadmin(*A, {"block", other, "--listener", "m"}).exit_code, 0);
  ASSERT_TRUE(eventually([&] { return refused(B->balancer->address("m"), other); }, in(10s)));
  EXPECT_TRUE(greeted(B->address(), other));
  EXPECT_EQ(listed_blocks(*B), (std::set<std::string>{client, other + "@m"}));

  // A twin started later learns the blocks in force.
  auto C = f.start("C", redis);
  ASSERT_TRUE(eventually([&] { return connected(*C); }, in(20s)));
  ASSERT_TRUE(eventually([&] { return refused(C->address(), client); }, in(10s)));
  EXPECT_TRUE(refused(C->balancer->address("m"), other));
  EXPECT_TRUE(greeted(C->address(), other));

  // Unblocked on B: served again through A and C, gone from every database.
  ASSERT_EQ(pbadmin(*B, {"unblock", client}).exit_code, 0);
  EXPECT_TRUE(greeted(B->address(), client));
  ASSERT_TRUE(eventually([&] { return greeted(A->address(), client); }, in(10s)));
  ASSERT_TRUE(eventually([&] { return greeted(C->address(), client); }, in(10s)));
  EXPECT_EQ(listed_blocks(*A), std::set<std::string>{other + "@m"});
  EXPECT_EQ(listed_blocks(*C), std::set<std::string>{other + "@m"});
  EXPECT_EQ(redis_cli(redis, {"EXISTS", "protobalance:b:" + client}), "0\n");
}

// The ids of the clients connected to `redis` now (redis-cli's own connection left out).
std::vector<std::string> redis_client_ids(const RedisServer& redis) {
  std::vector<std::string> ids;
  std::istringstream lines(redis_cli(redis, {"CLIENT", "LIST"}));
  const std::regex client(R"(^id=(\d+) .* cmd=(\S+))");
  std::smatch m;
  for (std::string line; std::getline(lines, line);) {
    if (std::regex_search(line, m, client) && m[2] != "client|list") ids.push_back(m[1]);
  }
  return ids;
}

// The link of `twin` is down both ways: no command connection, no subscription.
bool cut_off(const Twin& twin) {
  const auto t = twin_status(twin);
  const auto* c = t.if_contains("connected");
  const auto* s = t.if_contains("subscribed");
  return c != nullptr && c->is_bool() && !c->as_bool() && s != nullptr && s->is_bool() &&
         !s->as_bool();
}

TEST(Twin, UnblockMadeWhileATwinIsCutOffIsSeenWhenItReconnects) {
  // Verifies that the re-read after a reconnection reconciles blocks: A is cut off from Redis
  // (its connections killed, and new ones refused by a password set meanwhile: B's connections,
  // open before, go on); B unblocks a block B made and one A made, and A, not hearing it, still
  // refuses both; A blocks a client while cut off. Once A reconnects, it lifts the two blocks
  // gone from Redis, keeps the one still there and its own new one, and publishes that one (B
  // refuses it).
  RedisServer redis;
  ASSERT_TRUE(redis.ready());
  TwinFixture f;
  auto A = f.start("A", redis);
  ASSERT_TRUE(eventually([&] { return connected(*A); }, in(20s)));
  const auto a_connections = redis_client_ids(redis);  // A's command and subscriber connections
  ASSERT_EQ(a_connections.size(), 2u);
  auto B = f.start("B", redis);
  ASSERT_TRUE(eventually([&] { return connected(*B); }, in(20s)));

  const std::string by_b = source(40), kept = source(41), by_a = source(42), while_cut = source(43);
  ASSERT_EQ(pbadmin(*B, {"block", by_b}).exit_code, 0);
  ASSERT_EQ(pbadmin(*B, {"block", kept}).exit_code, 0);
  ASSERT_EQ(pbadmin(*A, {"block", by_a}).exit_code, 0);
  ASSERT_TRUE(eventually([&] { return refused(A->address(), by_b); }, in(10s)));
  ASSERT_TRUE(eventually([&] { return refused(A->address(), kept); }, in(10s)));
  ASSERT_TRUE(eventually([&] { return refused(B->address(), by_a); }, in(10s)));

  const std::vector<std::string> auth{"-a", "sesame", "--no-auth-warning"};
  const auto as_admin = [&](std::vector<std::string> args) {
    args.insert(args.begin(), auth.begin(), auth.end());
    return redis_cli(redis, args);
  };
  ASSERT_EQ(redis_cli(redis, {"CONFIG", "SET", "requirepass", "sesame"}), "OK\n");
  for (const auto& id : a_connections) as_admin({"CLIENT", "KILL", "ID", id});
  ASSERT_TRUE(eventually([&] { return cut_off(*A); }, in(20s)));

  ASSERT_EQ(pbadmin(*B, {"unblock", by_b}).exit_code, 0);
  ASSERT_EQ(pbadmin(*B, {"unblock", by_a}).exit_code, 0);
  EXPECT_TRUE(greeted(B->address(), by_b));
  EXPECT_TRUE(greeted(B->address(), by_a));
  EXPECT_EQ(as_admin({"EXISTS", "protobalance:b:" + by_b, "protobalance:b:" + by_a}), "0\n");
  ASSERT_EQ(pbadmin(*A, {"block", while_cut}).exit_code, 0);
  EXPECT_TRUE(refused(A->address(), by_b));  // A did not hear the unblocks
  EXPECT_TRUE(refused(A->address(), by_a));
  EXPECT_TRUE(cut_off(*A));

  ASSERT_EQ(as_admin({"CONFIG", "SET", "requirepass", ""}), "OK\n");
  ASSERT_TRUE(eventually([&] { return connected(*A); }, in(30s)));
  EXPECT_TRUE(eventually([&] { return greeted(A->address(), by_b); }, in(15s)));
  EXPECT_TRUE(eventually([&] { return greeted(A->address(), by_a); }, in(15s)));
  EXPECT_TRUE(refused(A->address(), kept));
  EXPECT_TRUE(refused(A->address(), while_cut));
  EXPECT_TRUE(eventually([&] { return refused(B->address(), while_cut); }, in(15s)));
  EXPECT_EQ(listed_blocks(*A), (std::set<std::string>{kept, while_cut}));
  EXPECT_EQ(listed_blocks(*B), (std::set<std::string>{kept, while_cut}));
  EXPECT_TRUE(A->balancer->process().wait_for(
      std::regex("the block of " + std::regex_replace(by_b, std::regex(R"(\.)"), R"(\.)") +
                 " on every listener until unblocked is no longer in Redis"),
      in(5s)));
}

TEST(Twin, TimedBlockEndsOnEveryTwin) {
  // Verifies that a block's end travels: `--for` set on A refuses on B, and the client is served
  // again on both once the time is up (waited for, not slept), with the Redis record expired.
  RedisServer redis;
  ASSERT_TRUE(redis.ready());
  TwinFixture f;
  std::unique_ptr<Twin> A, B;
  ASSERT_TRUE(f.start_pair(redis, A, B));

  const std::string client = source(30);
  ASSERT_EQ(pbadmin(*A, {"block", client, "--for", "3s"}).exit_code, 0);
  ASSERT_TRUE(eventually([&] { return refused(B->address(), client); }, in(10s)));
  const auto ttl = redis_cli(redis, {"TTL", "protobalance:b:" + client});
  EXPECT_GT(std::stoi(ttl), 0) << ttl;
  // Whole seconds: the end and the time of the write are each rounded.
  EXPECT_LE(std::stoi(ttl), 4) << ttl;
  ASSERT_TRUE(eventually([&] { return greeted(A->address(), client); }, in(20s)));
  ASSERT_TRUE(eventually([&] { return greeted(B->address(), client); }, in(20s)));
  EXPECT_TRUE(eventually([&] { return listed_blocks(*B).empty(); }, in(10s)));
  // The record's time is rounded up to whole seconds: it may outlive the block by one.
  EXPECT_TRUE(eventually(
      [&] { return redis_cli(redis, {"EXISTS", "protobalance:b:" + client}) == "0\n"; }, in(5s)));
}

TEST(Twin, BlocksArePublishedAgainAfterRedisLostItsData) {
  // Verifies that when Redis restarted empty, a balancer publishes again the blocks it holds
  // (the same record; a timed one with the time it has left), so that a twin started afterwards
  // refuses their clients; and that a block lifted (unblocked) or ended before is not published
  // again. Those two were made first: were they published again, they would reach Redis before
  // the two checked for (the link sends in order), so their absence is checked after those.
  RedisServer redis;
  ASSERT_TRUE(redis.ready());
  TwinFixture f;
  auto A = f.start("A", redis);
  ASSERT_TRUE(eventually([&] { return connected(*A); }, in(20s)));
  const std::string lifted = source(50), ended = source(51), forever = source(52),
                    timed = source(53);
  const auto record = [](const std::string& client) { return "protobalance:b:" + client; };
  const auto in_redis = [&](std::vector<std::string> clients) {
    std::vector<std::string> args{"EXISTS"};
    for (const auto& client : clients) args.push_back(record(client));
    return redis_cli(redis, args);
  };
  ASSERT_EQ(pbadmin(*A, {"block", lifted}).exit_code, 0);
  ASSERT_EQ(pbadmin(*A, {"unblock", lifted}).exit_code, 0);
  ASSERT_EQ(pbadmin(*A, {"block", ended, "--for", "2s"}).exit_code, 0);
  ASSERT_EQ(pbadmin(*A, {"block", forever}).exit_code, 0);
  ASSERT_EQ(pbadmin(*A, {"block", timed, "--for", "1h"}).exit_code, 0);
  ASSERT_TRUE(eventually([&] { return in_redis({forever, timed}) == "2\n"; }, in(10s)));
  // The short block ends (waited for, not slept), here and in Redis.
  ASSERT_TRUE(eventually([&] { return greeted(A->address(), ended); }, in(20s)));
  ASSERT_TRUE(eventually([&] { return in_redis({ended}) == "0\n"; }, in(10s)));
  ASSERT_EQ(in_redis({lifted}), "0\n");

  redis.kill();
  ASSERT_TRUE(eventually([&] { return !connected(*A); }, in(20s)));
  ASSERT_TRUE(redis.restart());
  ASSERT_TRUE(eventually([&] { return connected(*A); }, in(30s)));
  ASSERT_TRUE(eventually([&] { return in_redis({forever, timed}) == "2\n"; }, in(20s)));
  EXPECT_EQ(redis_cli(redis, {"GET", record(forever)}), "1 0 A\n");
  EXPECT_EQ(redis_cli(redis, {"TTL", record(forever)}), "-1\n");
  const std::string ttl = redis_cli(redis, {"TTL", record(timed)});
  EXPECT_GT(std::stoi(ttl), 3000) << ttl;
  EXPECT_LE(std::stoi(ttl), 3600) << ttl;
  EXPECT_EQ(in_redis({lifted, ended}), "0\n");
  EXPECT_TRUE(A->balancer->process().wait_for(
      std::regex("Redis lost its data; published again 2 blocks held here"), in(5s)));

  auto B = f.start("B", redis);
  ASSERT_TRUE(eventually([&] { return connected(*B); }, in(20s)));
  EXPECT_TRUE(eventually([&] { return refused(B->address(), forever); }, in(10s)));
  EXPECT_TRUE(eventually([&] { return refused(B->address(), timed); }, in(10s)));
  EXPECT_TRUE(greeted(B->address(), lifted));
  EXPECT_TRUE(greeted(B->address(), ended));
  EXPECT_EQ(listed_blocks(*B), (std::set<std::string>{forever, timed}));
  EXPECT_TRUE(refused(A->address(), forever));  // A kept its blocks throughout
  EXPECT_TRUE(refused(A->address(), timed));
}

}  // namespace
}  // namespace pb::test
