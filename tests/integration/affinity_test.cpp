// End-to-end tests of persistent client affinity: the real balancer with a real SQLite file,
// real clients from distinct loopback addresses, and pbadmin reading the database.
#include <signal.h>

#include <SQLiteCpp/SQLiteCpp.h>
#include <stdlib.h>

#include <functional>

#include <boost/json.hpp>
#include <gtest/gtest.h>

#include "protobalance/affinity/client_key.hpp"
#include "support/backend.hpp"
#include "support/client.hpp"
#include "support/process.hpp"

namespace pb::test {
namespace {

// A cluster of three greet_echo nodes with affinity on, one worker (so round robin is exact).
struct AffinityFixture {
  Backend a{"a", BackendMode::greet_echo};
  Backend b{"b", BackendMode::greet_echo};
  Backend c{"c", BackendMode::greet_echo};
  TempDir dir;
  std::filesystem::path file;

  // `nodes` limits which nodes are listed; `node_extra` adds keys to a node's table and
  // `cluster_extra` to the cluster's.
  void write(const std::string& ttl = "30d", const std::vector<std::string>& nodes = {"a", "b", "c"},
             const std::map<std::string, std::string>& node_extra = {},
             const std::string& cluster_extra = "") {
    std::string text =
        "[service]\nthreads = 1\nstate_dir = \"state\"\n"
        "[[listener]]\nname = \"l\"\nlisten = \"127.0.0.1:0\"\ncluster = \"web\"\n"
        "[[cluster]]\nname = \"web\"\n" + cluster_extra + "[cluster.affinity]\nenabled = true\nttl = \"" + ttl + "\"\n";
    for (const auto& name : nodes) {
      const Backend& backend = name == "a" ? a : name == "b" ? b : c;
      text += "[[cluster.node]]\nname = \"" + name + "\"\naddress = \"" + backend.address() + "\"\n";
      if (auto it = node_extra.find(name); it != node_extra.end()) text += it->second + "\n";
    }
    file = dir.write("pb.toml", text);
  }
};

// Which node serves a client connecting from `source` (127.0.0.x).
std::string served(const std::string& address, const std::string& source) {
  Client client(address, 5s, source);
  if (!client.connected()) return "<" + client.error() + ">";
  return client.recv_line(in(5s));
}

std::string source(int i) { return "127.0.0." + std::to_string(10 + i); }

boost::json::array list_json(const std::filesystem::path& file, std::vector<std::string> extra = {}) {
  std::vector<std::string> args{binary("pbadmin"), "--config", file.string(), "--json", "affinity", "list"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto result = run(args);
  EXPECT_EQ(result.exit_code, 0) << result.output;
  const auto start = result.output.find('[');
  if (start == std::string::npos) return {};
  return boost::json::parse(result.output.substr(start)).as_array();
}

// The node pbadmin lists for `client`. While the daemon runs, the store commits changes within
// about a second: polls (with a deadline) until the listed node is `expected`, and returns what
// was listed last.
std::string listed_node(const std::filesystem::path& file, const std::string& client,
                        const std::string& expected = "") {
  std::string listed;
  for (auto deadline = in(5s);;) {
    auto rows = list_json(file, {"--client", client});
    listed = rows.size() == 1 ? std::string(rows[0].as_object().at("node").as_string())
                              : std::string("<").append(std::to_string(rows.size())).append(" rows>");
    if (expected.empty() || listed == expected || std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(100ms);  // the store's commit interval is 1 s
  }
  return listed;
}

TEST(Affinity, ClientsStickToTheirNode) {
  // Verifies that each of 12 client addresses is served by the same node on every connection,
  // although round robin alone would rotate them.
  AffinityFixture f;
  f.write();
  Balancer balancer({"--config", f.file.string()});
  std::map<std::string, std::string> first;
  for (int i = 0; i < 12; ++i) first[source(i)] = served(balancer.address("l"), source(i));
  std::set<std::string> used;
  for (const auto& [client, node] : first) used.insert(node);
  EXPECT_EQ(used.size(), 3U) << "round robin should have spread the first connections";
  for (int round = 0; round < 3; ++round) {
    for (int i = 11; i >= 0; --i) {
      EXPECT_EQ(served(balancer.address("l"), source(i)), first[source(i)]) << source(i);
    }
  }
}

// Connects 9 clients, restarts the balancer (cleanly or with SIGKILL), and checks that the
// clients, connecting in reverse order, are still served by their nodes.
void check_survives_restart(int stop_signal) {
  AffinityFixture f;
  f.write();
  std::map<std::string, std::string> first;
  {
    Balancer balancer({"--config", f.file.string()});
    for (int i = 0; i < 9; ++i) first[source(i)] = served(balancer.address("l"), source(i));
    if (stop_signal == SIGKILL) {
      // New entries are committed at least every second: wait until the database has them all.
      for (auto deadline = in(5s); list_json(f.file).size() < 9 && std::chrono::steady_clock::now() < deadline;) {
        std::this_thread::sleep_for(100ms);  // polling the database, bounded by the deadline
      }
    }
    balancer.process().signal(stop_signal);
    ASSERT_TRUE(balancer.process().wait_exit(in(10s)).has_value());
  }
  Balancer again({"--config", f.file.string()});
  ASSERT_TRUE(again.process().wait_for(std::regex("affinity: 9 entries loaded"), in(5s)))
      << again.process().output();
  for (int i = 8; i >= 0; --i) {
    EXPECT_EQ(served(again.address("l"), source(i)), first[source(i)]) << source(i);
  }
}

TEST(Affinity, ReturningClientsServedByTheirNodeWhileTheMapIsStillLoading) {
  // Verifies that after a restart with a large database (100,000 more entries), clients that
  // connect while the map is still loading -- held by the test hook until they have been served,
  // so this is not a race -- are each served by their remembered node (the database answers
  // for the map), and that the load then completes with every entry.
  AffinityFixture f;
  f.write();
  std::map<std::string, std::string> first;
  {
    Balancer balancer({"--config", f.file.string()});
    for (int i = 0; i < 6; ++i) first[source(i)] = served(balancer.address("l"), source(i));
    balancer.process().signal(SIGTERM);
    ASSERT_TRUE(balancer.process().wait_exit(in(10s)).has_value());
  }
  constexpr int kExtra = 100'000;
  {
    SQLite::Database db((f.dir.path() / "state" / "protobalance.db").string(),
                        SQLite::OPEN_READWRITE);
    SQLite::Transaction tx(db);
    SQLite::Statement put(db, "INSERT INTO affinity VALUES ('web', ?1, 'c', 1, ?2, 1)");
    const auto now = std::chrono::floor<std::chrono::seconds>(
        std::chrono::system_clock::now().time_since_epoch());
    for (int i = 0; i < kExtra; ++i) {
      const auto key = affinity::parse_client("10." + std::to_string(i >> 16) + "." +
                                              std::to_string((i >> 8) & 255) + "." +
                                              std::to_string(i & 255));
      const auto blob = key->to_blob();
      put.bind(1, blob.data(), static_cast<int>(blob.size()));
      put.bind(2, static_cast<std::int64_t>(now.count()));
      put.exec();
      put.reset();
    }
    tx.commit();
  }
  const std::filesystem::path hold = f.dir.write("hold", "");
  ::setenv("PB_TEST_AFFINITY_LOAD_HOLD", hold.c_str(), 1);
  Balancer again({"--config", f.file.string()});
  ::unsetenv("PB_TEST_AFFINITY_LOAD_HOLD");
  ASSERT_TRUE(again.process().wait_for(std::regex("loading held"), in(5s)))
      << again.process().output();
  for (int i = 5; i >= 0; --i) {
    EXPECT_EQ(served(again.address("l"), source(i)), first[source(i)]) << source(i);
  }
  // Still loading: every client above was answered by the database.
  EXPECT_EQ(again.process().output().find("entries loaded"), std::string::npos)
      << again.process().output();
  std::filesystem::remove(hold);
  EXPECT_TRUE(again.process().wait_for(
      std::regex("affinity: " + std::to_string(kExtra + 6) + " entries loaded"), in(30s)))
      << again.process().output();
}

TEST(Affinity, DaemonRefusesADatabaseOfANewerRelease) {
  // Verifies that the balancer does not start on a database whose schema version is newer than
  // it knows: it exits with an error naming the file and the version, and leaves the file alone.
  AffinityFixture f;
  f.write();
  std::filesystem::create_directories(f.dir.path() / "state");
  const auto db_file = f.dir.path() / "state" / "protobalance.db";
  {
    SQLite::Database db(db_file.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    db.exec("CREATE TABLE affinity (future BLOB)");
    db.exec("PRAGMA user_version = 99");
  }
  Process daemon({binary("protobalance"), "--config", f.file.string()});
  const auto code = daemon.wait_exit(in(10s));
  ASSERT_TRUE(code.has_value()) << daemon.output();
  EXPECT_NE(*code, 0);
  EXPECT_NE(daemon.output().find("schema version 99 is newer"), std::string::npos)
      << daemon.output();
  EXPECT_EQ(daemon.output().find("serving with"), std::string::npos) << daemon.output();
  SQLite::Database db(db_file.string(), SQLite::OPEN_READONLY);
  EXPECT_EQ(db.execAndGet("PRAGMA user_version").getInt(), 99);
}

TEST(Affinity, SurvivesACleanRestart) {
  // Verifies that affinity entries written before SIGTERM are all used after a restart.
  check_survives_restart(SIGTERM);
}

TEST(Affinity, SurvivesKillNine) {
  // Verifies that entries older than a second survive SIGKILL (the store commits every second).
  check_survives_restart(SIGKILL);
}

TEST(Affinity, ListWorksWhileTheDaemonIsDownWithFiltersAndJson) {
  // Verifies pbadmin affinity list against the database of a stopped balancer: all rows, the
  // --node and --client filters, the JSON fields, and the human table.
  AffinityFixture f;
  f.write();
  std::map<std::string, std::string> first;
  {
    Balancer balancer({"--config", f.file.string()});
    for (int i = 0; i < 6; ++i) first[source(i)] = served(balancer.address("l"), source(i));
    balancer.process().signal(SIGTERM);
    ASSERT_EQ(balancer.process().wait_exit(in(10s)), 0);
  }
  auto rows = list_json(f.file);
  ASSERT_EQ(rows.size(), 6U);
  for (const auto& row : rows) {
    const auto& o = row.as_object();
    const std::string client(o.at("client").as_string());
    EXPECT_EQ(std::string(o.at("node").as_string()), first[client]) << client;
    EXPECT_EQ(std::string(o.at("cluster").as_string()), "web");
    EXPECT_EQ(o.at("first_seen").as_string().size(), 20U);  // 2026-11-21T19:45:03Z
    EXPECT_EQ(o.at("last_seen").as_string().back(), 'Z');
  }
  auto only_a = list_json(f.file, {"--node", "a"});
  EXPECT_EQ(only_a.size(), 2U);  // round robin over 3 nodes gave a two of six clients
  EXPECT_EQ(listed_node(f.file, source(3)), first[source(3)]);
  auto table = run({binary("pbadmin"), "--config", f.file.string(), "affinity", "list"});
  EXPECT_EQ(table.exit_code, 0);
  EXPECT_NE(table.output.find("CLIENT"), std::string::npos) << table.output;
  EXPECT_NE(table.output.find(source(5)), std::string::npos);
}

// Serves six clients over a, b and c, restarts on the configuration `rewrite` writes, and checks
// that every client is now served by a and listed on a.
void check_clients_move_to_a(const std::function<void(AffinityFixture&)>& rewrite) {
  AffinityFixture f;
  f.write();
  std::map<std::string, std::string> first;
  {
    Balancer balancer({"--config", f.file.string()});
    for (int i = 0; i < 6; ++i) first[source(i)] = served(balancer.address("l"), source(i));
    balancer.process().signal(SIGTERM);
    ASSERT_EQ(balancer.process().wait_exit(in(10s)), 0);
  }
  rewrite(f);
  {
    Balancer balancer({"--config", f.file.string()});
    for (int i = 0; i < 6; ++i) {
      const std::string now = served(balancer.address("l"), source(i));
      EXPECT_EQ(now, "a") << source(i) << " was on " << first[source(i)];
    }
    balancer.process().signal(SIGTERM);
    ASSERT_EQ(balancer.process().wait_exit(in(10s)), 0);
  }
  for (int i = 0; i < 6; ++i) EXPECT_EQ(listed_node(f.file, source(i)), "a") << source(i);
}

TEST(Affinity, RemovedOrDrainingNodeMovesItsClients) {
  // Verifies that clients of a node removed from the configuration (c), or draining (b), are
  // moved to the node that serves them next, and the list shows the new node.
  check_clients_move_to_a([](AffinityFixture& f) {
    f.write("30d", {"a", "b"}, {{"b", "state = \"draining\""}});
  });
}

TEST(Affinity, OfflineNodeMovesItsClients) {
  // Verifies that clients of nodes that are offline (b and c) are moved for good to a.
  check_clients_move_to_a([](AffinityFixture& f) {
    f.write("30d", {"a", "b", "c"},
            {{"b", "state = \"offline\""}, {"c", "state = \"offline\""}});
  });
}

TEST(Affinity, TransientFailureKeepsTheEntryAndTheClientReturns) {
  // Verifies that while a client's node is unavailable the client is served by the fall-over
  // node, its entry still names its own node, and it returns there once the node is back.
  AffinityFixture f;
  // Fast probes so that the node comes back within the test.
  f.write("30d", {"a", "b"}, {{"a", "fallover = \"b\""}}, "retry_interval = \"300ms\"\n");
  Balancer balancer({"--config", f.file.string()});
  const std::string client = source(0);
  ASSERT_EQ(served(balancer.address("l"), client), "a");  // round robin's first pick
  f.a.set_mode(BackendMode::close_at_once);  // closes before any byte: unavailable
  EXPECT_EQ(served(balancer.address("l"), client), "b");
  EXPECT_EQ(served(balancer.address("l"), client), "b");
  EXPECT_EQ(listed_node(f.file, client, "a"), "a");  // the entry is kept
  f.a.set_mode(BackendMode::greet_echo);
  std::string back;
  for (auto deadline = in(5s); back != "a" && std::chrono::steady_clock::now() < deadline;) {
    back = served(balancer.address("l"), client);  // bounded: the probe brings `a` back
  }
  EXPECT_EQ(back, "a");
  balancer.process().signal(SIGTERM);
  ASSERT_EQ(balancer.process().wait_exit(in(10s)), 0);
  EXPECT_EQ(listed_node(f.file, client), "a");
}

TEST(Affinity, ExpiredEntriesAreForgotten) {
  // Verifies that with a 3 s TTL an entry unused for longer is not used: the client starts a
  // new entry with one connection. (Times are whole seconds: an entry may be forgotten up to a
  // second early, never late.)
  AffinityFixture f;
  f.write("3s");
  Balancer balancer({"--config", f.file.string()});
  const std::string client = source(1);
  const std::string node = served(balancer.address("l"), client);
  EXPECT_EQ(served(balancer.address("l"), client), node);
  std::this_thread::sleep_for(3200ms);  // the passage of time is what is tested: past the TTL
  served(balancer.address("l"), client);
  // The new entry counts one connection; the expired one had two.
  bool renewed = false;
  for (auto deadline = in(5s); !renewed && std::chrono::steady_clock::now() < deadline;) {
    auto rows = list_json(f.file, {"--client", client});
    renewed = rows.size() == 1 && rows[0].as_object().at("connections").as_int64() == 1;
    if (!renewed) std::this_thread::sleep_for(100ms);  // waiting for the store's commit
  }
  EXPECT_TRUE(renewed) << run({binary("pbadmin"), "--config", f.file.string(), "--json", "affinity", "list"}).output;
}

TEST(Affinity, UnwritableStateDirDoesNotStopForwarding) {
  // Verifies that a state_dir that cannot be created (a file is in the way) is logged and the
  // balancer forwards anyway, without persistence.
  AffinityFixture f;
  f.write();
  f.dir.write("state", "not a directory");
  Balancer balancer({"--config", f.file.string()});
  EXPECT_EQ(served(balancer.address("l"), source(0)), "a");
  EXPECT_EQ(served(balancer.address("l"), source(0)), "a");
  EXPECT_TRUE(balancer.process().running());
}

TEST(Affinity, CorruptDatabaseIsMovedAside) {
  // Verifies that a corrupt database file is renamed protobalance.db.corrupt-* and a fresh one
  // is used, with forwarding unaffected.
  AffinityFixture f;
  f.write();
  f.dir.write("state/protobalance.db", std::string(8192, 'x'));
  Balancer balancer({"--config", f.file.string()});
  EXPECT_EQ(served(balancer.address("l"), source(0)), "a");
  bool moved = false;
  for (const auto& entry : std::filesystem::directory_iterator(f.dir.path() / "state")) {
    moved = moved || entry.path().filename().string().starts_with("protobalance.db.corrupt-");
  }
  EXPECT_TRUE(moved);
}

}  // namespace
}  // namespace pb::test
