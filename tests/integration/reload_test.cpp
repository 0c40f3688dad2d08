// End-to-end tests of live reconfiguration by SIGHUP: the real binary, real backends.
#include <signal.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "support/backend.hpp"
#include "support/client.hpp"
#include "support/process.hpp"

namespace pb::test {
namespace {

// How long a reload may take to show in the log: it is quick, but under TSan on a machine busy
// with other work (CI) the control thread can wait seconds for a CPU.
constexpr auto kReload = std::chrono::seconds(20);

std::string node_table(const std::string& name, const std::string& address) {
  return "[[cluster.node]]\nname = \"" + name + "\"\naddress = \"" + address + "\"\n";
}

std::string listener_table(const std::string& name, const std::string& listen) {
  return "[[listener]]\nname = \"" + name + "\"\nlisten = \"" + listen + "\"\ncluster = \"c\"\n";
}

// Reads which node answers each of `n` new connections (greet_echo nodes say their name).
std::map<std::string, int> spread(const std::string& address, int n) {
  std::map<std::string, int> seen;
  for (int i = 0; i < n; ++i) {
    Client client(address);
    ++seen[client.connected() ? client.recv_line(in(5s)) : "<refused>"];
  }
  return seen;
}

TEST(Reload, SighupAddsAndRemovesNodesAndListenersWithoutDroppingConnections) {
  // Verifies that SIGHUP applies a new file: a node is added and one removed, a listener is
  // added and one removed, and a connection opened before the reload keeps working.
  Backend a("a", BackendMode::greet_echo);
  Backend b("b", BackendMode::greet_echo);
  TempDir dir;
  const std::string head = "[service]\nthreads = 1\n[[cluster]]\nname = \"c\"\n";
  auto file = dir.write("pb.toml",
                        head + node_table("a", a.address()) + listener_table("old", "127.0.0.1:0"));
  Balancer balancer({"--config", file.string()});
  const std::string old_address = balancer.address("old");

  Client before(old_address);
  ASSERT_TRUE(before.connected());
  ASSERT_EQ(before.recv_line(), "a");

  dir.write("pb.toml", head + node_table("b", b.address()) + listener_table("new", "127.0.0.1:0"));
  balancer.process().signal(SIGHUP);
  auto added = balancer.process().wait_for(std::regex("listener new on (\\S+) ->"), in(kReload));
  ASSERT_TRUE(added) << balancer.process().output();
  ASSERT_TRUE(balancer.process().wait_for(std::regex("reloaded .*node c/a removed"), in(kReload)));

  // The old connection, to a node that is no longer configured, runs on.
  ASSERT_TRUE(before.send_all("still here"));
  EXPECT_EQ(before.recv_exact(10), "still here");
  // New connections on the new listener go to the new node only.
  EXPECT_EQ(spread((*added)[1], 4), (std::map<std::string, int>{{"b", 4}}));
  // The removed listener refuses connects.
  Client gone(old_address, 1s);
  EXPECT_FALSE(gone.connected());
}

TEST(Reload, BadFileKeepsTheOldConfigurationServing) {
  // Verifies that a reload of a broken file changes nothing, logs the error with its position,
  // and the balancer goes on serving with the old configuration.
  Backend a("a", BackendMode::greet_echo);
  TempDir dir;
  const std::string good = "[[cluster]]\nname = \"c\"\n" + node_table("a", a.address()) +
                           listener_table("l", "127.0.0.1:0");
  auto file = dir.write("pb.toml", good);
  Balancer balancer({"--config", file.string()});
  dir.write("pb.toml", good + "[[cluster.node]]\nname = \"x\"\naddress = \"127.0.0.1:99999\"\n");
  balancer.process().signal(SIGHUP);
  auto refused =
      balancer.process().wait_for(std::regex("pb\\.toml:(\\d+):(\\d+): [^\\n]*port"), in(kReload));
  ASSERT_TRUE(refused) << balancer.process().output();
  EXPECT_EQ((*refused)[1], "12");  // the bad address line
  EXPECT_EQ(spread(balancer.address("l"), 3), (std::map<std::string, int>{{"a", 3}}));
}

TEST(Reload, ListenerMovedToAnotherAddress) {
  // Verifies that a listener whose address changes is bound on the new address before the old
  // one is closed, and that it serves there.
  Backend a("a", BackendMode::greet_echo);
  TempDir dir;
  const std::string head = "[[cluster]]\nname = \"c\"\n" + node_table("a", a.address());
  auto file = dir.write("pb.toml", head + listener_table("l", "127.0.0.1:0"));
  Balancer balancer({"--config", file.string()});
  const std::string first = balancer.address("l");
  dir.write("pb.toml", head + listener_table("l", "127.0.0.2:0"));
  balancer.process().signal(SIGHUP);
  auto moved = balancer.process().wait_for(std::regex("listener l on (127\\.0\\.0\\.2:\\d+) ->"),
                                           in(kReload));
  ASSERT_TRUE(moved) << balancer.process().output();
  EXPECT_EQ(spread((*moved)[1], 2), (std::map<std::string, int>{{"a", 2}}));
  Client old(first, 1s);
  EXPECT_FALSE(old.connected());
}

TEST(Reload, SectionsThatNeedARestartAreNamedAndTheLogLevelApplies) {
  // Verifies that a reload never drops a change without a word: the log level and
  // shutdown_timeout apply at once, and [service] threads, [metrics], [access_log] and [snmp]
  // are reported as taking effect at the next restart (and change nothing meanwhile).
  Backend a("a", BackendMode::greet_echo);
  TempDir dir;
  const std::string tail = "[[cluster]]\nname = \"c\"\n" + node_table("a", a.address()) +
                           listener_table("l", "127.0.0.1:0");
  auto file = dir.write("pb.toml", "[service]\nthreads = 1\n" + tail);
  Balancer balancer({"--config", file.string()});
  ASSERT_EQ(spread(balancer.address("l"), 1), (std::map<std::string, int>{{"a", 1}}));
  EXPECT_EQ(balancer.process().output().find(" via c/a: "), std::string::npos)
      << "a per-connection debug line at log level info";

  dir.write("pb.toml",
            "[service]\nthreads = 2\nlog_level = \"debug\"\nshutdown_timeout = \"5s\"\n"
            "[metrics]\nlisten = \"127.0.0.1:0\"\n[access_log]\nenabled = true\n"
            "[snmp]\nenabled = true\n" +
                tail);
  balancer.process().signal(SIGHUP);
  const auto reloaded = balancer.process().wait_for(std::regex("reloaded [^\n]*"), in(kReload));
  ASSERT_TRUE(reloaded) << balancer.process().output();
  const std::string line = (*reloaded)[0];
  for (const char* expected : {"log level now debug", "shutdown_timeout now 5s",
                               "[service] threads changed: takes effect at the next restart",
                               "[metrics] listen changed: takes effect at the next restart",
                               "[access_log] changed: takes effect at the next restart",
                               "[snmp] changed: takes effect at the next restart"}) {
    EXPECT_NE(line.find(expected), std::string::npos) << expected << " missing from: " << line;
  }
  // The new level is in force: each connection now has its debug line.
  ASSERT_EQ(spread(balancer.address("l"), 1), (std::map<std::string, int>{{"a", 1}}));
  EXPECT_TRUE(balancer.process().wait_for(std::regex(" via c/a: "), in(5s)))
      << balancer.process().output();
  // And nothing was started that the reload said would wait for a restart.
  EXPECT_EQ(balancer.process().output().find("metrics: serving"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(dir.path() / "var" / "access.log"));
}

}  // namespace
}  // namespace pb::test
