#include <gtest/gtest.h>

#include <string>

#include "load_test_support.hpp"
#include "protobalance/config/config.hpp"

// Each test writes the offending TOML inline so that the expected line:column can be read off the
// text: a value in `key = value` starts at column len(key) + 4.

namespace pb::config {
namespace {

using test::describe;
using test::error_at;
using test::load;
using test::single_error;

TEST(ConfigErrors, ReportsUnknownKeysInEveryTable) {
  // Verifies that a misspelt key is reported at the key, naming it and listing the allowed keys, in
  // each table.
  EXPECT_TRUE(single_error(load("[service]\nthread = 4\n"), 2, 1,
                           "unknown key 'thread' in [service]; allowed keys: threads, state_dir, "
                           "shutdown_timeout, log_level"));
  EXPECT_TRUE(single_error(
      load(R"([[listener]]
name = "l"
listen = "127.0.0.1:0"
cluster = "c"
  port = 80
[[cluster]]
name = "c"
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
)"),
      5, 3, "unknown key 'port' in [[listener]]; allowed keys: name, listen, cluster"));
  EXPECT_TRUE(single_error(
      load(R"([[cluster]]
name = "c"
algo = "hash"
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
)"),
      3, 1,
      "unknown key 'algo' in [[cluster]]; allowed keys: name, algorithm, connect_timeout, "
      "retry_interval, idle_timeout, load_rating, hash_key, affinity, node, health, agent, "
      "slow_start"));
  EXPECT_TRUE(single_error(
      load(R"([[cluster]]
name = "c"
[cluster.affinity]
enable = true
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
)"),
      4, 1,
      "unknown key 'enable' in [cluster.affinity]; allowed keys: enabled, ttl, prefix_v4, "
      "prefix_v6"));
  EXPECT_TRUE(single_error(
      load(R"([[cluster]]
name = "c"
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
weight = 2
)"),
      6, 1,
      "unknown key 'weight' in [[cluster.node]]; allowed keys: name, address, load_factor, "
      "max_connections, fallover, tier, state"));
}

TEST(ConfigErrors, ReportsUnknownTopLevelTablesAndKeys) {
  // Verifies that tables not supported ([control], [stats]) and stray keys are errors at the
  // key.
  EXPECT_TRUE(single_error(
      load("[control]\nsocket = \"admin.sock\"\n"), 1, 2,
      "unknown key 'control' in the top level; allowed keys: service, listener, cluster"));
  EXPECT_TRUE(single_error(load("\n\n[stats]\n"), 3, 2, "unknown key 'stats'"));
  EXPECT_TRUE(
      single_error(load("verbose = true\n"), 1, 1, "unknown key 'verbose' in the top level"));
  EXPECT_TRUE(single_error(load("[service.extra]\n"), 1, 10, "unknown key 'extra' in [service]"));
}

TEST(ConfigErrors, ReportsWrongTypesInService) {
  // Verifies that each [service] key names its expected type and the type found, at the value.
  EXPECT_TRUE(single_error(load("[service]\nthreads = \"4\"\n"), 2, 11,
                           "threads must be an integer, got string"));
  EXPECT_TRUE(single_error(load("[service]\nthreads = 2.0\n"), 2, 11,
                           "threads must be an integer, got float"));
  EXPECT_TRUE(single_error(load("[service]\nstate_dir = 5\n"), 2, 13,
                           "state_dir must be a string, got integer"));
  EXPECT_TRUE(
      single_error(load("[service]\nshutdown_timeout = 30\n"), 2, 20,
                   "shutdown_timeout must be a duration string such as \"3s\", got integer"));
  EXPECT_TRUE(single_error(load("[service]\nlog_level = true\n"), 2, 13,
                           "log_level must be a string, got boolean"));
  EXPECT_TRUE(single_error(load("service = 3\n"), 1, 11,
                           "service must be a table, written [service], got integer"));
}

TEST(ConfigErrors, ReportsWrongTypesInClustersAndNodes) {
  // Verifies the type errors of cluster, affinity and node keys, each at its value.
  const LoadResult cluster = load(R"([[cluster]]
name = "c"
connect_timeout = 3
hash_key = 5
algorithm = ["hash"]
load_rating = 1.5
[cluster.affinity]
enabled = "yes"
ttl = 30
prefix_v4 = "24"
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
)");
  ASSERT_EQ(cluster.errors.size(), 7U) << describe(cluster);
  EXPECT_TRUE(error_at(cluster, 0, 3, 19,
                       "connect_timeout must be a duration string such as \"3s\", got integer"));
  EXPECT_TRUE(error_at(cluster, 1, 4, 12, "hash_key must be a string, got integer"));
  EXPECT_TRUE(error_at(cluster, 2, 5, 13, "algorithm must be a string, got array"));
  EXPECT_TRUE(error_at(cluster, 3, 6, 15, "load_rating must be a string, got float"));
  EXPECT_TRUE(error_at(cluster, 4, 8, 11, "enabled must be a boolean (true or false), got string"));
  EXPECT_TRUE(
      error_at(cluster, 5, 9, 7, "ttl must be a duration string such as \"3s\", got integer"));
  EXPECT_TRUE(error_at(cluster, 6, 10, 13, "prefix_v4 must be an integer, got string"));

  const LoadResult node = load(R"([[cluster]]
name = "c"
[[cluster.node]]
name = 7
address = 127
load_factor = "2"
max_connections = 2.0
fallover = false
tier = 1.5
state = 2
)");
  ASSERT_EQ(node.errors.size(), 7U) << describe(node);
  EXPECT_TRUE(error_at(node, 0, 4, 8, "name must be a string, got integer"));
  EXPECT_TRUE(error_at(node, 1, 5, 11, "address must be a string, got integer"));
  EXPECT_TRUE(
      error_at(node, 2, 6, 15, "load_factor must be a number (integer or float), got string"));
  EXPECT_TRUE(error_at(node, 3, 7, 19, "max_connections must be an integer, got float"));
  EXPECT_TRUE(error_at(node, 4, 8, 12, "fallover must be a string, got boolean"));
  EXPECT_TRUE(error_at(node, 5, 9, 8, "tier must be an integer, got float"));
  EXPECT_TRUE(error_at(node, 6, 10, 9, "state must be a string, got integer"));
}

TEST(ConfigErrors, ReportsSectionsOfTheWrongShape) {
  // Verifies that [listener] instead of [[listener]], non-table entries and a non-table affinity
  // are refused.
  EXPECT_TRUE(single_error(load("[listener]\nname = \"l\"\n"), 1, 1,
                           "listener must be an array of tables, written [[listener]], got table"));
  EXPECT_TRUE(single_error(load("cluster = [\"a\"]\n"), 1, 12,
                           "each cluster entry must be a table, got string"));
  EXPECT_TRUE(single_error(load(R"([[cluster]]
name = "c"
affinity = true
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
)"),
                           3, 12,
                           "affinity must be a table, written [cluster.affinity], got boolean"));
  EXPECT_TRUE(
      single_error(load("[[cluster]]\nname = \"c\"\nnode = 5\n"), 3, 8,
                   "node must be an array of tables, written [[cluster.node]], got integer"));
}

TEST(ConfigErrors, ReportsValuesOutOfRange) {
  // Verifies the range checks of numeric keys, each at the value and with the allowed range in the
  // message.
  EXPECT_TRUE(single_error(load("[service]\nthreads = 1025\n"), 2, 11,
                           "threads must be from 0 to 1024, got 1025"));
  EXPECT_TRUE(single_error(load("[service]\nthreads = -1\n"), 2, 11,
                           "threads must be from 0 to 1024, got -1"));
  const LoadResult affinity = load(R"([[cluster]]
name = "c"
[cluster.affinity]
prefix_v4 = 33
prefix_v6 = 0
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
)");
  ASSERT_EQ(affinity.errors.size(), 2U) << describe(affinity);
  EXPECT_TRUE(error_at(affinity, 0, 4, 13, "prefix_v4 must be from 1 to 32, got 33"));
  EXPECT_TRUE(error_at(affinity, 1, 5, 13, "prefix_v6 must be from 1 to 128, got 0"));

  const LoadResult nodes = load(R"([[cluster]]
name = "c"
[[cluster.node]]
name = "a"
address = "127.0.0.1:1"
load_factor = 0
max_connections = -1
tier = -1
[[cluster.node]]
name = "b"
address = "127.0.0.1:2"
load_factor = 1000000.5
max_connections = 4294967296
[[cluster.node]]
name = "c"
address = "127.0.0.1:3"
load_factor = -2.0
[[cluster.node]]
name = "d"
address = "127.0.0.1:4"
load_factor = nan
)");
  ASSERT_EQ(nodes.errors.size(), 7U) << describe(nodes);
  EXPECT_TRUE(
      error_at(nodes, 0, 6, 15, "load_factor must be greater than 0 and at most 1000000, got 0"));
  EXPECT_TRUE(error_at(nodes, 1, 7, 19, "max_connections must be from 0 to 4294967295, got -1"));
  EXPECT_TRUE(error_at(nodes, 2, 8, 8, "tier must be from 1 to 4294967295, got -1"));
  EXPECT_TRUE(error_at(nodes, 3, 12, 15,
                       "load_factor must be greater than 0 and at most 1000000, got 1000000.5"));
  EXPECT_TRUE(
      error_at(nodes, 4, 13, 19, "max_connections must be from 0 to 4294967295, got 4294967296"));
  EXPECT_TRUE(error_at(nodes, 5, 17, 15, "load_factor must be greater than 0"));
  EXPECT_TRUE(error_at(nodes, 6, 21, 15, "load_factor must be greater than 0"));
}

TEST(ConfigErrors, ReportsBadDurations) {
  // Verifies malformed durations everywhere and the "> 0" rule of connect_timeout, retry_interval
  // and ttl.
  EXPECT_TRUE(single_error(
      load("[service]\nshutdown_timeout = \"30 s\"\n"), 2, 20,
      "shutdown_timeout has an invalid duration '30 s'; expected a whole number and one unit "
      "(ms, s, m, h, d)"));
  const LoadResult result = load(R"([[cluster]]
name = "c"
connect_timeout = "0s"
retry_interval = "0ms"
idle_timeout = "1.5h"
[cluster.affinity]
ttl = "0d"
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
)");
  ASSERT_EQ(result.errors.size(), 4U) << describe(result);
  EXPECT_TRUE(error_at(result, 0, 3, 19, "connect_timeout must be greater than 0s"));
  EXPECT_TRUE(error_at(result, 1, 4, 18, "retry_interval must be greater than 0s"));
  EXPECT_TRUE(error_at(result, 2, 5, 16, "idle_timeout has an invalid duration '1.5h'"));
  EXPECT_TRUE(error_at(result, 3, 7, 7, "ttl must be greater than 0s"));
}

TEST(ConfigErrors, ReportsMissingRequiredKeysAtTheTable) {
  // Verifies that a missing required key is reported at the header of the table that lacks it.
  const LoadResult listener = load(R"(
[[listener]]
name = "l"
)");
  ASSERT_EQ(listener.errors.size(), 2U) << describe(listener);
  EXPECT_TRUE(error_at(listener, 0, 2, 1, "[[listener]] is missing required key 'listen'"));
  EXPECT_TRUE(error_at(listener, 1, 2, 1, "[[listener]] is missing required key 'cluster'"));

  EXPECT_TRUE(single_error(load(R"([[listener]]
listen = "127.0.0.1:0"
cluster = "c"
[[cluster]]
name = "c"
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
)"),
                           1, 1, "[[listener]] is missing required key 'name'"));
  EXPECT_TRUE(single_error(load(R"([[cluster]]
algorithm = "random"
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
)"),
                           1, 1, "[[cluster]] is missing required key 'name'"));
  const LoadResult nodes = load(R"([[cluster]]
name = "c"

  [[cluster.node]]
  address = "127.0.0.1:1"
  [[cluster.node]]
  name = "m"
)");
  ASSERT_EQ(nodes.errors.size(), 2U) << describe(nodes);
  EXPECT_TRUE(error_at(nodes, 0, 4, 3, "[[cluster.node]] is missing required key 'name'"));
  EXPECT_TRUE(error_at(nodes, 1, 6, 3, "[[cluster.node]] is missing required key 'address'"));
}

TEST(ConfigErrors, ReportsClustersWithoutNodes) {
  // Verifies that a cluster needs at least one [[cluster.node]], also when `node` is an empty
  // array.
  EXPECT_TRUE(single_error(load("\n[[cluster]]\nname = \"empty\"\n"), 2, 1,
                           "cluster 'empty' has no nodes; add at least one [[cluster.node]]"));
  EXPECT_TRUE(single_error(load("[[cluster]]\nname = \"c\"\nnode = []\n"), 1, 1,
                           "cluster 'c' has no nodes"));
}

TEST(ConfigErrors, ReportsDuplicateNames) {
  // Verifies that listener and cluster names are unique, node names unique within their cluster
  // only.
  const LoadResult result = load(R"([[listener]]
name = "l"
listen = "127.0.0.1:0"
cluster = "c"
[[listener]]
name = "l"
listen = "127.0.0.1:0"
cluster = "c"
[[cluster]]
name = "c"
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
[[cluster.node]]
name = "n"
address = "127.0.0.1:2"
[[cluster]]
name = "c"
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
[[cluster]]
name = "d"
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
)");
  ASSERT_EQ(result.errors.size(), 3U) << describe(result);
  EXPECT_TRUE(error_at(result, 0, 6, 8, "duplicate listener name 'l' (already defined at line 2)"));
  EXPECT_TRUE(error_at(result, 1, 15, 8,
                       "duplicate node name 'n' in cluster 'c' (already defined at line 12)"));
  EXPECT_TRUE(
      error_at(result, 2, 18, 8, "duplicate cluster name 'c' (already defined at line 10)"));
}

TEST(ConfigErrors, ReportsInvalidNames) {
  // Verifies the name charset [A-Za-z0-9_.-]+ for listeners, clusters and nodes, and that a name
  // cannot be empty.
  const LoadResult result = load(R"([[listener]]
name = "my listener"
listen = "127.0.0.1:0"
cluster = "c/1"
[[cluster]]
name = "c/1"
[[cluster.node]]
name = ""
address = "127.0.0.1:1"
)");
  // The listener's reference to the badly named cluster is not reported a second time.
  ASSERT_EQ(result.errors.size(), 3U) << describe(result);
  EXPECT_TRUE(error_at(
      result, 0, 2, 8,
      "name must be non-empty and use only letters, digits, '_', '.' and '-', got 'my listener'"));
  EXPECT_TRUE(
      error_at(result, 1, 6, 8,
               "name must be non-empty and use only letters, digits, '_', '.' and '-', got 'c/1'"));
  EXPECT_TRUE(
      error_at(result, 2, 8, 8,
               "name must be non-empty and use only letters, digits, '_', '.' and '-', got ''"));
}

TEST(ConfigErrors, ReportsListenersOfUnknownClusters) {
  // Verifies that a listener must name a [[cluster]], reported at its `cluster` value with the
  // known names.
  EXPECT_TRUE(single_error(load(R"([[listener]]
name = "l"
listen = "127.0.0.1:0"
cluster = "wbe"
[[cluster]]
name = "web"
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
[[cluster]]
name = "db"
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
)"),
                           4, 11, "cluster 'wbe' is not defined; defined clusters: db, web"));
  EXPECT_TRUE(
      single_error(load("[[listener]]\nname = \"l\"\nlisten = \"127.0.0.1:0\"\ncluster = \"x\"\n"),
                   4, 11, "cluster 'x' is not defined; defined clusters: none"));
}

TEST(ConfigErrors, ReportsBadEndpoints) {
  // Verifies endpoint errors at the value: listeners may use port 0, nodes may not; bad forms are
  // explained.
  const LoadResult result = load(R"([[listener]]
name = "a"
listen = "8080"
cluster = "c"
[[listener]]
name = "b"
listen = "::1:8080"
cluster = "c"
[[cluster]]
name = "c"
[[cluster.node]]
name = "n"
address = "127.0.0.1:0"
[[cluster.node]]
name = "m"
address = "no-such-host.invalid:80"
[[cluster.node]]
name = "o"
address = "127.0.0.1:65536"
)");
  ASSERT_EQ(result.errors.size(), 5U) << describe(result);
  EXPECT_TRUE(error_at(result, 0, 3, 10, "listen: expected host:port, e.g. 127.0.0.1:8080"));
  EXPECT_TRUE(error_at(result, 1, 7, 10, "listen: IPv6 addresses need brackets: [::1]:80"));
  EXPECT_TRUE(error_at(result, 2, 13, 11, "address: port must be 1..65535"));
  EXPECT_TRUE(error_at(result, 3, 16, 11, "address: cannot resolve 'no-such-host.invalid': "));
  EXPECT_TRUE(error_at(result, 4, 19, 11, "address: port must be 1..65535"));
}

TEST(ConfigErrors, ReportsTwoListenersOnOneAddress) {
  // Verifies that two listeners may not share an address (SO_REUSEPORT would split traffic
  // silently) but may share port 0.
  const LoadResult result = load(R"([[listener]]
name = "a"
listen = "127.0.0.1:7000"
cluster = "c"
[[listener]]
name = "b"
listen = "127.0.0.1:7000"
cluster = "c"
[[listener]]
name = "z1"
listen = "127.0.0.1:0"
cluster = "c"
[[listener]]
name = "z2"
listen = "127.0.0.1:0"
cluster = "c"
[[cluster]]
name = "c"
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
)");
  EXPECT_TRUE(single_error(
      result, 7, 10, "listen address 127.0.0.1:7000 is already used by listener 'a' (line 1)"));
}

TEST(ConfigErrors, ReportsBadHashKeys) {
  // Verifies that hash_key must be exactly 32 hex digits: wrong length and a non-hex digit are both
  // errors.
  const LoadResult result = load(R"([[cluster]]
name = "c"
hash_key = "000102030405060708090a0b0c0d0e0"
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
[[cluster]]
name = "d"
hash_key = "000102030405060708090a0b0c0d0e0g"
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
)");
  ASSERT_EQ(result.errors.size(), 2U) << describe(result);
  EXPECT_TRUE(error_at(result, 0, 3, 12,
                       "hash_key must be exactly 32 hex digits (16 bytes), got 31 characters"));
  EXPECT_TRUE(error_at(result, 1, 9, 12, "'g' at offset 31 is not a hex digit"));
}

TEST(ConfigErrors, ReportsUnknownWordsForEnumeratedKeys) {
  // Verifies that state, log_level and an empty state_dir are refused with the accepted values
  // listed.
  EXPECT_TRUE(single_error(
      load("[service]\nlog_level = \"verbose\"\n"), 2, 13,
      "log_level must be one of trace, debug, info, warn, error, critical, off, got 'verbose'"));
  EXPECT_TRUE(
      single_error(load("[service]\nstate_dir = \"\"\n"), 2, 13, "state_dir must not be empty"));
  EXPECT_TRUE(single_error(
      load(R"([[cluster]]
name = "c"
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
state = "up"
)"),
      6, 9, "state must be one of available, draining, offline (or green, yellow, red), got 'up'"));
}

TEST(ConfigErrors, ReportsEveryErrorInFileOrder) {
  // Verifies that all problems of a file are reported together, sorted by position, and that no
  // config is returned.
  const LoadResult result = load(R"([service]
zeta = 1
threads = "x"
alpha = 2

[[listener]]
name = "l"
listen = "127.0.0.1:80"
cluster = "none"

[[cluster]]
name = "c"
connect_timeout = "soon"

[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
load_factor = 0

[snmpd]
enabled = true
)");
  EXPECT_EQ(result.config, nullptr);
  ASSERT_EQ(result.errors.size(), 7U) << describe(result);
  EXPECT_TRUE(error_at(result, 0, 2, 1, "unknown key 'zeta' in [service]"));
  EXPECT_TRUE(error_at(result, 1, 3, 11, "threads must be an integer, got string"));
  EXPECT_TRUE(error_at(result, 2, 4, 1, "unknown key 'alpha' in [service]"));
  EXPECT_TRUE(error_at(result, 3, 9, 11, "cluster 'none' is not defined; defined clusters: c"));
  EXPECT_TRUE(error_at(result, 4, 13, 19, "connect_timeout has an invalid duration 'soon'"));
  EXPECT_TRUE(error_at(result, 5, 18, 15, "load_factor must be greater than 0"));
  EXPECT_TRUE(error_at(result, 6, 20, 2, "unknown key 'snmpd'"));
  for (const Diagnostic& d : result.errors) {
    EXPECT_EQ(d.file, "test.toml");
  }
}

TEST(ConfigErrors, ReportsTomlSyntaxErrorsAsOneDiagnostic) {
  // Verifies that a TOML syntax error is a single diagnostic at toml++'s position of the error.
  const LoadResult result = load("[service]\nthreads = = 4\n");
  EXPECT_TRUE(single_error(result, 2, 11, "could not determine value type")) << describe(result);

  const LoadResult duplicate = load("[service]\nthreads = 1\nthreads = 2\n");
  ASSERT_EQ(duplicate.errors.size(), 1U) << describe(duplicate);
  EXPECT_EQ(duplicate.errors[0].pos.line, 3U);
  EXPECT_EQ(duplicate.config, nullptr);
}

}  // namespace
}  // namespace pb::config
