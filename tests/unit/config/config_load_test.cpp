#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>

#include "load_test_support.hpp"
#include "protobalance/config/config.hpp"

namespace pb::config {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using test::describe;
using test::load;

// Every key the configuration knows, each set to a value different from its default.
constexpr std::string_view kFullConfig = R"(# Every key, with values that differ from the defaults.
[service]
threads = 4
state_dir = "state"
shutdown_timeout = "45s"
log_level = "debug"

[[listener]]
name = "web"
listen = "127.0.0.1:0"
cluster = "web-pool"

[[listener]]
name = "db.v6"
listen = "[::1]:15432"
cluster = "db_pool"

[[cluster]]
name = "web-pool"
algorithm = "hash"
connect_timeout = "250ms"
retry_interval = "5s"
idle_timeout = "0s"
load_rating = "connections * 2"
hash_key = "000102030405060708090a0b0c0d0eFF"

[cluster.affinity]
enabled = true
ttl = "7d"
prefix_v4 = 24
prefix_v6 = 48

[[cluster.node]]
name = "alpha"
address = "192.0.2.1:9001"
load_factor = 2.5
max_connections = 100
fallover = "beta"
tier = 1
state = "draining"

[[cluster.node]]
name = "beta"
address = "localhost:9002"
load_factor = 3
tier = 2
state = "red"

[[cluster]]
name = "db_pool"

[[cluster.node]]
name = "alpha"
address = "[2001:db8::5]:5432"
)";

TEST(LoadString, ReadsEveryKey) {
  // Verifies that every key of a complete configuration ends up, with the right value, in the
  // Config.
  const LoadResult result = load(kFullConfig);
  ASSERT_NE(result.config, nullptr) << describe(result);
  ASSERT_TRUE(result.errors.empty());
  const Config& cfg = *result.config;

  EXPECT_TRUE(cfg.file.empty());
  EXPECT_EQ(cfg.service.threads, 4U);
  EXPECT_EQ(cfg.service.state_dir, fs::path("/etc/pb/state"));
  EXPECT_EQ(cfg.service.shutdown_timeout, 45s);
  EXPECT_EQ(cfg.service.log_level, "debug");

  ASSERT_EQ(cfg.listeners.size(), 2U);
  const ListenerConfig& web = cfg.listeners[0];
  EXPECT_EQ(web.name, "web");
  EXPECT_EQ(web.address, "127.0.0.1:0");
  EXPECT_EQ(web.endpoint.address().to_string(), "127.0.0.1");
  EXPECT_EQ(web.endpoint.port(), 0);
  EXPECT_EQ(web.cluster, "web-pool");
  EXPECT_EQ(web.pos.line, 8U);
  EXPECT_EQ(web.pos.column, 1U);
  const ListenerConfig& db = cfg.listeners[1];
  EXPECT_EQ(db.name, "db.v6");
  EXPECT_EQ(db.address, "[::1]:15432");
  EXPECT_TRUE(db.endpoint.address().is_v6());
  EXPECT_TRUE(db.endpoint.address().is_loopback());
  EXPECT_EQ(db.endpoint.port(), 15432);
  EXPECT_EQ(db.cluster, "db_pool");
  EXPECT_EQ(db.pos.line, 13U);

  ASSERT_EQ(cfg.clusters.size(), 2U);
  const ClusterConfig& pool = cfg.clusters[0];
  EXPECT_EQ(pool.name, "web-pool");
  EXPECT_EQ(pool.algorithm, "hash");
  EXPECT_EQ(pool.connect_timeout, 250ms);
  EXPECT_EQ(pool.retry_interval, 5s);
  EXPECT_EQ(pool.idle_timeout, 0s);
  EXPECT_EQ(pool.load_rating, "connections * 2");
  ASSERT_TRUE(pool.hash_key.has_value());
  const std::array<std::uint8_t, 16> expected_key{0, 1, 2,  3,  4,  5,  6,  7,
                                                  8, 9, 10, 11, 12, 13, 14, 0xff};
  EXPECT_EQ(*pool.hash_key, expected_key);
  EXPECT_TRUE(pool.affinity.enabled);
  EXPECT_EQ(pool.affinity.ttl, std::chrono::hours(24 * 7));
  EXPECT_EQ(pool.affinity.prefix_v4, 24);
  EXPECT_EQ(pool.affinity.prefix_v6, 48);
  EXPECT_EQ(pool.pos.line, 18U);
  EXPECT_EQ(pool.pos.column, 1U);
  EXPECT_EQ(pool.algorithm_pos.line, 20U);
  EXPECT_EQ(pool.algorithm_pos.column, 13U);
  EXPECT_EQ(pool.load_rating_pos.line, 24U);
  EXPECT_EQ(pool.load_rating_pos.column, 15U);
  EXPECT_EQ(pool.hash_key_pos.line, 25U);
  EXPECT_EQ(pool.hash_key_pos.column, 12U);

  ASSERT_EQ(pool.nodes.size(), 2U);
  const NodeConfig& alpha = pool.nodes[0];
  EXPECT_EQ(alpha.name, "alpha");
  EXPECT_EQ(alpha.address, "192.0.2.1:9001");
  EXPECT_EQ(alpha.endpoint.address().to_string(), "192.0.2.1");
  EXPECT_EQ(alpha.endpoint.port(), 9001);
  EXPECT_DOUBLE_EQ(alpha.load_factor, 2.5);
  EXPECT_EQ(alpha.max_connections, 100U);
  EXPECT_EQ(alpha.fallover, "beta");
  EXPECT_EQ(alpha.tier, 1U);
  EXPECT_EQ(alpha.state, AdminState::draining);
  EXPECT_EQ(alpha.pos.line, 33U);
  EXPECT_EQ(alpha.pos.column, 1U);
  EXPECT_EQ(alpha.fallover_pos.line, 38U);
  EXPECT_EQ(alpha.fallover_pos.column, 12U);
  EXPECT_EQ(alpha.tier_pos.line, 39U);
  EXPECT_EQ(alpha.tier_pos.column, 8U);
  const NodeConfig& beta = pool.nodes[1];
  EXPECT_EQ(beta.name, "beta");
  EXPECT_EQ(beta.address, "localhost:9002");
  EXPECT_EQ(beta.endpoint.address().to_string(), "127.0.0.1");
  EXPECT_EQ(beta.endpoint.port(), 9002);
  EXPECT_DOUBLE_EQ(beta.load_factor, 3.0);
  EXPECT_EQ(beta.max_connections, 0U);
  EXPECT_EQ(beta.fallover, "");
  EXPECT_EQ(beta.fallover_pos.line, 0U);
  EXPECT_EQ(beta.tier, 2U);
  EXPECT_EQ(beta.tier_pos.line, 46U);
  EXPECT_EQ(beta.state, AdminState::offline);

  // The second cluster sets nothing but its name and node: every default applies.
  const ClusterConfig& db_pool = cfg.clusters[1];
  EXPECT_EQ(db_pool.name, "db_pool");
  EXPECT_EQ(db_pool.algorithm, "round_robin");
  EXPECT_EQ(db_pool.algorithm_pos.line, 0U);
  EXPECT_EQ(db_pool.connect_timeout, 3s);
  EXPECT_EQ(db_pool.retry_interval, 10s);
  EXPECT_EQ(db_pool.idle_timeout, 1h);
  EXPECT_EQ(db_pool.load_rating, "connections / load_factor");
  EXPECT_FALSE(db_pool.hash_key.has_value());
  EXPECT_FALSE(db_pool.affinity.enabled);
  EXPECT_EQ(db_pool.affinity.ttl, std::chrono::hours(24 * 30));
  EXPECT_EQ(db_pool.affinity.prefix_v4, 32);
  EXPECT_EQ(db_pool.affinity.prefix_v6, 64);
  ASSERT_EQ(db_pool.nodes.size(), 1U);
  EXPECT_EQ(db_pool.nodes[0].name, "alpha");
  EXPECT_EQ(db_pool.nodes[0].endpoint.address().to_string(), "2001:db8::5");
  EXPECT_DOUBLE_EQ(db_pool.nodes[0].load_factor, 1.0);
  EXPECT_EQ(db_pool.nodes[0].tier, 1U);
  EXPECT_EQ(db_pool.nodes[0].state, AdminState::available);
  EXPECT_EQ(db_pool.nodes[0].pos.line, 52U);
}

TEST(LoadString, FindsClustersAndNodesByName) {
  // Verifies find_cluster and find_node return the named entry, or null for an unknown name.
  const LoadResult result = load(kFullConfig);
  ASSERT_NE(result.config, nullptr) << describe(result);
  const ClusterConfig* pool = result.config->find_cluster("web-pool");
  ASSERT_NE(pool, nullptr);
  EXPECT_EQ(pool->name, "web-pool");
  EXPECT_EQ(result.config->find_cluster("db_pool"), &result.config->clusters[1]);
  EXPECT_EQ(result.config->find_cluster("web"), nullptr);
  const NodeConfig* beta = pool->find_node("beta");
  ASSERT_NE(beta, nullptr);
  EXPECT_EQ(beta->endpoint.port(), 9002);
  EXPECT_EQ(pool->find_node("gamma"), nullptr);
}

TEST(LoadString, AcceptsAnEmptyDocument) {
  // Verifies that a file with no listeners or clusters is valid and gets every service default.
  const LoadResult result = load("# nothing configured yet\n");
  ASSERT_NE(result.config, nullptr) << describe(result);
  EXPECT_TRUE(result.config->listeners.empty());
  EXPECT_TRUE(result.config->clusters.empty());
  EXPECT_EQ(result.config->service.threads, 0U);
  EXPECT_EQ(result.config->service.shutdown_timeout, 30s);
  EXPECT_EQ(result.config->service.log_level, "info");
  EXPECT_EQ(result.config->service.state_dir, fs::path("/etc/pb/var"));
}

TEST(LoadString, AcceptsInlineTablesAndArraysOfTables) {
  // Verifies that the inline TOML spelling of [[listener]] / [[cluster.node]] is read like the
  // header form.
  const LoadResult result =
      load(R"(listener = [{ name = "a", listen = "127.0.0.1:7000", cluster = "c" }]
cluster = [{ name = "c", node = [{ name = "n", address = "127.0.0.1:7001", tier = 0 }] }]
)");
  ASSERT_NE(result.config, nullptr) << describe(result);
  ASSERT_EQ(result.config->listeners.size(), 1U);
  EXPECT_EQ(result.config->listeners[0].endpoint.port(), 7000);
  EXPECT_EQ(result.config->listeners[0].pos.line, 1U);
  EXPECT_EQ(result.config->listeners[0].pos.column, 13U);
  ASSERT_EQ(result.config->clusters.size(), 1U);
  ASSERT_EQ(result.config->clusters[0].nodes.size(), 1U);
  // tier 0 is passed on untouched: the "tier >= 1" rule is checked where the cluster is validated.
  EXPECT_EQ(result.config->clusters[0].nodes[0].tier, 0U);
  EXPECT_EQ(result.config->clusters[0].nodes[0].tier_pos.line, 2U);
}

TEST(LoadString, AcceptsBoundaryValues) {
  // Verifies the inclusive ends of every numeric range and the colour spelling of states.
  const LoadResult result = load(R"([service]
threads = 1024
shutdown_timeout = "0s"
log_level = "off"

[[cluster]]
name = "c"
[cluster.affinity]
prefix_v4 = 1
prefix_v6 = 128
[[cluster.node]]
name = "n1"
address = "127.0.0.1:65535"
load_factor = 1000000
max_connections = 4294967295
state = "green"
[[cluster.node]]
name = "n2"
address = "127.0.0.1:1"
load_factor = 0.001
max_connections = 0
state = "yellow"
)");
  ASSERT_NE(result.config, nullptr) << describe(result);
  const Config& cfg = *result.config;
  EXPECT_EQ(cfg.service.threads, 1024U);
  EXPECT_EQ(cfg.service.shutdown_timeout, 0s);
  EXPECT_EQ(cfg.service.log_level, "off");
  const ClusterConfig& c = cfg.clusters.at(0);
  EXPECT_EQ(c.affinity.prefix_v4, 1);
  EXPECT_EQ(c.affinity.prefix_v6, 128);
  EXPECT_DOUBLE_EQ(c.nodes.at(0).load_factor, 1e6);
  EXPECT_EQ(c.nodes.at(0).max_connections, 4294967295U);
  EXPECT_EQ(c.nodes.at(0).endpoint.port(), 65535);
  EXPECT_EQ(c.nodes.at(0).state, AdminState::available);
  EXPECT_DOUBLE_EQ(c.nodes.at(1).load_factor, 0.001);
  EXPECT_EQ(c.nodes.at(1).state, AdminState::draining);
}

TEST(LoadString, ResolvesStateDirAgainstTheBaseDirectory) {
  // Verifies that a relative state_dir is made absolute under the config's folder and an absolute
  // one is kept.
  const LoadResult relative =
      load_string("[service]\nstate_dir = \"data/../state\"\n", "x.toml", "/srv/pb");
  ASSERT_NE(relative.config, nullptr) << describe(relative);
  EXPECT_EQ(relative.config->service.state_dir, fs::path("/srv/pb/state"));

  const LoadResult absolute =
      load_string("[service]\nstate_dir = \"/var/lib/pb\"\n", "x.toml", "/srv/pb");
  ASSERT_NE(absolute.config, nullptr) << describe(absolute);
  EXPECT_EQ(absolute.config->service.state_dir, fs::path("/var/lib/pb"));

  const LoadResult defaulted = load_string("", "x.toml", "/srv/pb");
  ASSERT_NE(defaulted.config, nullptr) << describe(defaulted);
  EXPECT_EQ(defaulted.config->service.state_dir, fs::path("/srv/pb/var"));

  // A relative base directory is itself taken from the current directory.
  const LoadResult relative_base = load_string("", "x.toml", "conf");
  ASSERT_NE(relative_base.config, nullptr) << describe(relative_base);
  EXPECT_EQ(relative_base.config->service.state_dir, fs::current_path() / "conf" / "var");
  EXPECT_TRUE(relative_base.config->service.state_dir.is_absolute());
}

// A directory of its own under the system's temporary directory, removed at the end of the test.
class LoadFile : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    dir_ = fs::temp_directory_path() /
           ("pb_config_" + std::to_string(::getpid()) + "_" + info->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }

  fs::path write(const std::string& name, std::string_view text) {
    const fs::path path = dir_ / name;
    std::ofstream(path) << text;
    return path;
  }

  fs::path dir_;
};

TEST_F(LoadFile, ReadsAFileAndResolvesPathsAgainstItsFolder) {
  // Verifies that load_file records the absolute file name and puts a relative state_dir next to
  // the file.
  const fs::path file = write("pb.toml", "[service]\nstate_dir = \"db\"\nthreads = 2\n");
  const LoadResult result = load_file(file);
  ASSERT_NE(result.config, nullptr) << describe(result);
  EXPECT_EQ(result.config->file, file);
  EXPECT_EQ(result.config->service.state_dir, dir_ / "db");
  EXPECT_EQ(result.config->service.threads, 2U);
}

TEST_F(LoadFile, NamesTheFileInDiagnostics) {
  // Verifies that errors in a file carry the file name as given, so that the output reads
  // FILE:LINE:COL.
  const fs::path file = write("bad.toml", "[service]\nthreads = \"many\"\n");
  const LoadResult result = load_file(file);
  EXPECT_EQ(result.config, nullptr);
  ASSERT_EQ(result.errors.size(), 1U) << describe(result);
  EXPECT_EQ(result.errors[0].to_string(),
            file.string() + ":2:11: threads must be an integer, got string");
}

TEST_F(LoadFile, ReportsAMissingFileClearly) {
  // Verifies that a file that does not exist gives one position-less error saying so, and no
  // config.
  const fs::path file = dir_ / "missing.toml";
  const LoadResult result = load_file(file);
  EXPECT_EQ(result.config, nullptr);
  ASSERT_EQ(result.errors.size(), 1U);
  const Diagnostic& d = result.errors[0];
  EXPECT_EQ(d.file, file.string());
  EXPECT_EQ(d.pos.line, 0U);
  EXPECT_EQ(d.message, "cannot read configuration file: No such file or directory");
  EXPECT_EQ(d.to_string(),
            file.string() + ": cannot read configuration file: No such file or directory");
}

TEST_F(LoadFile, ReportsADirectory) {
  // Verifies that pointing --config at a folder is an error, not an empty configuration.
  const LoadResult result = load_file(dir_);
  EXPECT_EQ(result.config, nullptr);
  ASSERT_EQ(result.errors.size(), 1U);
  EXPECT_EQ(result.errors[0].message, "cannot read configuration file: it is a directory");
}

TEST(AdminState, ParsesNamesAndColours) {
  // Verifies both spellings of each state and that anything else (including other case) is refused.
  EXPECT_EQ(parse_admin_state("available"), AdminState::available);
  EXPECT_EQ(parse_admin_state("green"), AdminState::available);
  EXPECT_EQ(parse_admin_state("draining"), AdminState::draining);
  EXPECT_EQ(parse_admin_state("yellow"), AdminState::draining);
  EXPECT_EQ(parse_admin_state("offline"), AdminState::offline);
  EXPECT_EQ(parse_admin_state("red"), AdminState::offline);
  for (const char* bad : {"", "Available", "online", "up", "down", "RED"}) {
    EXPECT_EQ(parse_admin_state(bad), std::nullopt) << bad;
  }
}

TEST(AdminState, PrintsTheContractNames) {
  // Verifies that to_string gives the state names pbadmin and the config use, and that they parse
  // back.
  EXPECT_EQ(to_string(AdminState::available), "available");
  EXPECT_EQ(to_string(AdminState::draining), "draining");
  EXPECT_EQ(to_string(AdminState::offline), "offline");
  for (const AdminState s : {AdminState::available, AdminState::draining, AdminState::offline}) {
    EXPECT_EQ(parse_admin_state(to_string(s)), s);
  }
}

TEST(Diagnostic, PrintsFileLineColumnAndMessage) {
  // Verifies the FILE:LINE:COL: message format of the --check contract.
  const Diagnostic d{"/etc/pb/pb.toml", SourcePos{12, 7}, "threads must be an integer, got string"};
  EXPECT_EQ(d.to_string(), "/etc/pb/pb.toml:12:7: threads must be an integer, got string");
}

TEST(QuickConfig, BuildsOneListenerAndOneCluster) {
  // Verifies quick mode's config: listener "default" -> cluster "default" with nodes node1..nodeN
  // in order.
  const Endpoint listen{boost::asio::ip::make_address("127.0.0.1"), 8080};
  const std::vector<Endpoint> nodes{{boost::asio::ip::make_address("127.0.0.1"), 9001},
                                    {boost::asio::ip::make_address("::1"), 9002}};
  const auto cfg = make_quick_config(listen, nodes, "least_connections", "localhost:8080",
                                     {"127.0.0.1:9001", "[::1]:9002"});
  ASSERT_NE(cfg, nullptr);
  EXPECT_TRUE(cfg->file.empty());
  EXPECT_EQ(cfg->service.state_dir, fs::current_path() / "var");
  ASSERT_EQ(cfg->listeners.size(), 1U);
  EXPECT_EQ(cfg->listeners[0].name, "default");
  EXPECT_EQ(cfg->listeners[0].cluster, "default");
  EXPECT_EQ(cfg->listeners[0].endpoint, listen);
  EXPECT_EQ(cfg->listeners[0].address, "localhost:8080");
  ASSERT_EQ(cfg->clusters.size(), 1U);
  const ClusterConfig& c = cfg->clusters[0];
  EXPECT_EQ(c.name, "default");
  EXPECT_EQ(c.algorithm, "least_connections");
  ASSERT_EQ(c.nodes.size(), 2U);
  EXPECT_EQ(c.nodes[0].name, "node1");
  EXPECT_EQ(c.nodes[0].endpoint, nodes[0]);
  EXPECT_EQ(c.nodes[0].address, "127.0.0.1:9001");
  EXPECT_EQ(c.nodes[1].name, "node2");
  EXPECT_EQ(c.nodes[1].endpoint, nodes[1]);
  EXPECT_EQ(c.nodes[1].address, "[::1]:9002");
  EXPECT_EQ(c.nodes[1].state, AdminState::available);
  EXPECT_EQ(cfg->find_cluster("default"), &c);
}

TEST(QuickConfig, SpellsEndpointsWhenNoTextIsGiven) {
  // Verifies that missing address texts fall back to the endpoint's own spelling (IPv6 in
  // brackets).
  const Endpoint listen{boost::asio::ip::make_address("::1"), 8080};
  const std::vector<Endpoint> nodes{{boost::asio::ip::make_address("10.0.0.1"), 9001}};
  const auto cfg = make_quick_config(listen, nodes, "round_robin", "", {});
  ASSERT_NE(cfg, nullptr);
  EXPECT_EQ(cfg->listeners.at(0).address, "[::1]:8080");
  EXPECT_EQ(cfg->clusters.at(0).nodes.at(0).address, "10.0.0.1:9001");
}

TEST(LoadString, HalfCloseIsOnUnlessTheClusterTurnsItOff) {
  // Verifies [[cluster]] half_close: true when absent, false when set so, and a value that is
  // not a boolean refused at its position.
  const std::string head = "[[cluster]]\nname = \"c\"\n";
  const std::string node = "[[cluster.node]]\nname = \"n\"\naddress = \"127.0.0.1:1\"\n";
  const LoadResult absent = load(head + node);
  ASSERT_NE(absent.config, nullptr) << describe(absent);
  EXPECT_TRUE(absent.config->clusters.at(0).half_close);
  const LoadResult off = load(head + "half_close = false\n" + node);
  ASSERT_NE(off.config, nullptr) << describe(off);
  EXPECT_FALSE(off.config->clusters.at(0).half_close);
  EXPECT_TRUE(test::single_error(load(head + "half_close = \"no\"\n" + node), 3, 14,
                                 "half_close must be a boolean (true or false), got string"));
}

}  // namespace
}  // namespace pb::config
