// The configuration diff behind reload's change list: what is added, removed and changed, and
// nothing when nothing differs.
#include "protobalance/config/config_diff.hpp"

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "load_test_support.hpp"

namespace pb::config::test {
namespace {

using Lines = std::vector<std::string>;

// A listener "web" on cluster "web" with nodes alpha and beta; `extra_cluster` follows the
// [[cluster]] keys of "web", `extra` is appended at the end of the file.
std::string base(const std::string& extra_cluster = "", const std::string& node_alpha = "",
                 const std::string& extra = "") {
  return "[[listener]]\nname = \"web\"\nlisten = \"127.0.0.1:8080\"\ncluster = \"web\"\n"
         "[[cluster]]\nname = \"web\"\n" +
         extra_cluster + "\n[[cluster.node]]\nname = \"alpha\"\naddress = \"127.0.0.1:9001\"\n" +
         node_alpha + "\n[[cluster.node]]\nname = \"beta\"\naddress = \"127.0.0.1:9002\"\n" + extra;
}

std::shared_ptr<const Config> parse(const std::string& text) {
  const LoadResult result = load(text);
  EXPECT_TRUE(result.config) << describe(result);
  return result.config;
}

std::vector<std::string> diff(const std::string& before, const std::string& after) {
  const auto a = parse(before);
  const auto b = parse(after);
  if (!a || !b) return {"<configuration did not load>"};
  return describe_changes(*a, *b);
}

const std::string kSpare =
    "[[cluster]]\nname = \"spare\"\n[[cluster.node]]\nname = \"s\"\naddress = \"127.0.0.1:9009\"\n";

TEST(ConfigDiff, NothingChanged) {
  // Verifies that the same file (loaded twice) gives no change at all.
  EXPECT_EQ(diff(base(), base()), Lines{});
}

TEST(ConfigDiff, ListenerAddedMovedRoutedRemoved) {
  // Verifies each listener change: a new one, a new address, a new cluster, and removal.
  const std::string second =
      "[[listener]]\nname = \"api\"\nlisten = \"127.0.0.1:8081\"\ncluster = \"web\"\n";
  EXPECT_EQ(diff(base(), second + base()), Lines{"listener api added on 127.0.0.1:8081"});
  EXPECT_EQ(diff(second + base(), base()), Lines{"listener api removed"});

  std::string moved = base();
  moved.replace(moved.find("8080"), 4, "8090");
  EXPECT_EQ(diff(base(), moved), Lines{"listener web moved from 127.0.0.1:8080 to 127.0.0.1:8090"});

  std::string routed = base("", "", kSpare);
  routed.replace(routed.find("cluster = \"web\""), 15, "cluster = \"spare\"");
  EXPECT_EQ(diff(base("", "", kSpare), routed), Lines{"listener web now routes to cluster spare"});
}

TEST(ConfigDiff, ClusterAddedAndRemoved) {
  // Verifies that a whole cluster coming or going is one line, with its node count.
  EXPECT_EQ(diff(base(), base("", "", kSpare)), Lines{"cluster spare added (1 nodes)"});
  EXPECT_EQ(diff(base("", "", kSpare), base()), Lines{"cluster spare removed"});
}

TEST(ConfigDiff, NodeAddedRemovedChanged) {
  // Verifies node lines: added, removed (its connections run on), and changed settings.
  const std::string gamma = "[[cluster.node]]\nname = \"gamma\"\naddress = \"127.0.0.1:9003\"\n";
  EXPECT_EQ(diff(base(), base("", "", gamma)), Lines{"node web/gamma added"});
  EXPECT_EQ(diff(base("", "", gamma), base()),
            Lines{"node web/gamma removed (its connections run on)"});
  EXPECT_EQ(diff(base(), base("", "load_factor = 3\n")), Lines{"node web/alpha changed"});
  EXPECT_EQ(diff(base(), base("", "fallover = \"beta\"\n")), Lines{"node web/alpha changed"});
}

TEST(ConfigDiff, AlgorithmChange) {
  // Verifies that another algorithm, or half_close turned off, is reported as the cluster's
  // settings changing.
  EXPECT_EQ(diff(base(), base("algorithm = \"least_connections\"\n")),
            Lines{"cluster web settings changed"});
  EXPECT_EQ(diff(base(), base("half_close = false\n")), Lines{"cluster web settings changed"});
}

TEST(ConfigDiff, HealthAgentAndSlowStartChanges) {
  // Verifies that [cluster.health], [cluster.agent] and slow_start changes are reported, and
  // that node_health_differs sees each of them (and not an equal copy).
  const std::string health = "[cluster.health]\ninterval = \"2s\"\n";
  const std::string health_fall = "[cluster.health]\ninterval = \"2s\"\nfall = 5\n";
  const std::string agent = "[cluster.agent]\nport = 9777\n";
  const std::string agent_faster = "[cluster.agent]\nport = 9777\ninterval = \"1s\"\n";
  const std::string line = "cluster web health checks, agent or slow start changed";
  EXPECT_EQ(diff(base(), base(health)), Lines{line});
  EXPECT_EQ(diff(base(health), base(health_fall)), Lines{line});
  EXPECT_EQ(diff(base(health), base()), Lines{line});
  EXPECT_EQ(diff(base(), base(agent)), Lines{line});
  EXPECT_EQ(diff(base(agent), base(agent_faster)), Lines{line});
  EXPECT_EQ(diff(base(), base("slow_start = \"30s\"\n")), Lines{line});
  EXPECT_EQ(diff(base(health + agent), base(health + agent)), Lines{});

  const auto plain = parse(base());
  const auto checked = parse(base(health));
  const auto checked_again = parse(base(health));
  ASSERT_TRUE(plain && checked && checked_again);
  EXPECT_TRUE(node_health_differs(plain->clusters.front(), checked->clusters.front()));
  EXPECT_FALSE(node_health_differs(checked->clusters.front(), checked_again->clusters.front()));
}

TEST(ConfigDiff, AffinityAndRestartOnlySections) {
  // Verifies the affinity line and that sections not swapped while running say so.
  EXPECT_EQ(diff(base(), base("[cluster.affinity]\nenabled = true\n")),
            Lines{"cluster web affinity settings changed"});
  EXPECT_EQ(diff(base("[cluster.affinity]\nenabled = true\n"), base()),
            Lines{"cluster web affinity switched off"});
  EXPECT_EQ(diff(base(), "[service]\nthreads = 3\n" + base()),
            Lines{"[service] threads changed: takes effect at the next restart"});
  EXPECT_EQ(diff(base(), "[service]\nshutdown_timeout = \"5s\"\n" + base()),
            Lines{"shutdown_timeout now 5s"});
}

}  // namespace
}  // namespace pb::config::test
