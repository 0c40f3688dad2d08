// [metrics], [snmp] and [access_log]: the observability sections of the configuration.
#include <gtest/gtest.h>

#include <string>

#include "load_test_support.hpp"
#include "protobalance/config/config.hpp"

// As in config_errors_test.cpp, a value in `key = value` starts at column len(key) + 4.

namespace pb::config {
namespace {

using test::describe;
using test::load;
using test::single_error;

TEST(ObservabilityConfig, DefaultsWhenTheSectionsAreAbsent) {
  // Verifies that without the sections there is no exporter, no sub-agent and no access log, and
  // that the defaults are the documented ones (agentx socket, log file under state_dir).
  const LoadResult result = load("");
  ASSERT_TRUE(result.config) << describe(result);
  const Config& cfg = *result.config;
  EXPECT_TRUE(cfg.metrics.listen.empty());
  EXPECT_FALSE(cfg.snmp.enabled);
  EXPECT_EQ(cfg.snmp.agentx, "/var/agentx/master");
  EXPECT_FALSE(cfg.access_log.enabled);
  EXPECT_EQ(cfg.access_log.path, "/etc/pb/var/access.log");
}

TEST(ObservabilityConfig, ReadsEveryKey) {
  // Verifies that each key of the three sections is read into the Config with its value.
  const LoadResult result = load(R"([service]
state_dir = "/srv/pb"

[metrics]
listen = "127.0.0.1:9187"

[snmp]
enabled = true
agentx = "/run/agentx/master"

[access_log]
enabled = true
path = "logs/access.log"
)");
  ASSERT_TRUE(result.config) << describe(result);
  const Config& cfg = *result.config;
  EXPECT_EQ(cfg.metrics.listen, "127.0.0.1:9187");
  EXPECT_EQ(cfg.metrics.endpoint.address().to_string(), "127.0.0.1");
  EXPECT_EQ(cfg.metrics.endpoint.port(), 9187);
  EXPECT_TRUE(cfg.snmp.enabled);
  EXPECT_EQ(cfg.snmp.agentx, "/run/agentx/master");
  EXPECT_TRUE(cfg.access_log.enabled);
  EXPECT_EQ(cfg.access_log.path, "/srv/pb/logs/access.log");
}

TEST(ObservabilityConfig, EmptyMetricsListenMeansNoExporter) {
  // Verifies that listen = "" is accepted and leaves the exporter off, like an absent key.
  const LoadResult result = load("[metrics]\nlisten = \"\"\n");
  ASSERT_TRUE(result.config) << describe(result);
  EXPECT_TRUE(result.config->metrics.listen.empty());
}

TEST(ObservabilityConfig, MetricsListenAcceptsPortZeroAndIpv6) {
  // Verifies that port 0 (any free port, for tests) and a bracketed IPv6 address are accepted.
  LoadResult result = load("[metrics]\nlisten = \"127.0.0.1:0\"\n");
  ASSERT_TRUE(result.config) << describe(result);
  EXPECT_EQ(result.config->metrics.endpoint.port(), 0);
  result = load("[metrics]\nlisten = \"[::1]:9187\"\n");
  ASSERT_TRUE(result.config) << describe(result);
  EXPECT_TRUE(result.config->metrics.endpoint.address().is_v6());
  EXPECT_EQ(result.config->metrics.endpoint.port(), 9187);
}

TEST(ObservabilityConfig, ReportsBadMetricsValuesAtTheValue) {
  // Verifies that a listen address that is not host:port, or not a string, is an error at the
  // value, and that [metrics] must be a table.
  EXPECT_TRUE(single_error(load("[metrics]\nlisten = \"9187\"\n"), 2, 10, "listen: "));
  EXPECT_TRUE(single_error(load("[metrics]\nlisten = \"127.0.0.1:99999\"\n"), 2, 10, "listen: "));
  EXPECT_TRUE(single_error(load("[metrics]\nlisten = 9187\n"), 2, 10,
                           "listen must be a string, got integer"));
  EXPECT_TRUE(single_error(load("metrics = \"127.0.0.1:9187\"\n"), 1, 11,
                           "metrics must be a table, written [metrics], got string"));
}

TEST(ObservabilityConfig, ReportsUnknownKeysWithTheAllowedOnes) {
  // Verifies that a misspelt key in each section is reported at the key with the allowed keys.
  EXPECT_TRUE(single_error(load("[metrics]\nlisten = \"\"\nport = 9187\n"), 3, 1,
                           "unknown key 'port' in [metrics]; allowed keys: listen"));
  EXPECT_TRUE(single_error(load("[snmp]\n  enable = true\n"), 2, 3,
                           "unknown key 'enable' in [snmp]; allowed keys: enabled, agentx"));
  EXPECT_TRUE(single_error(load("[access_log]\nfile = \"a.log\"\n"), 2, 1,
                           "unknown key 'file' in [access_log]; allowed keys: enabled, path"));
}

TEST(ObservabilityConfig, ReportsWrongTypesInSnmpAndAccessLog) {
  // Verifies that each key names its expected type and the type found, at the value.
  EXPECT_TRUE(single_error(load("[snmp]\nenabled = \"yes\"\n"), 2, 11,
                           "enabled must be a boolean (true or false), got string"));
  EXPECT_TRUE(
      single_error(load("[snmp]\nagentx = 705\n"), 2, 10, "agentx must be a string, got integer"));
  EXPECT_TRUE(single_error(load("[access_log]\nenabled = 1\n"), 2, 11,
                           "enabled must be a boolean (true or false), got integer"));
  EXPECT_TRUE(single_error(load("[access_log]\npath = \"\"\n"), 2, 8, "path must not be empty"));
  EXPECT_TRUE(single_error(load("snmp = true\n"), 1, 8,
                           "snmp must be a table, written [snmp], got boolean"));
}

TEST(ObservabilityConfig, AgentxAcceptsUnixPathsAndTcpAddresses) {
  // Verifies the AgentX socket forms: a relative path is taken from the configuration's folder,
  // "unix:" is dropped, and a TCP address becomes net-snmp's tcp or tcp6 transport.
  const auto agentx = [](const std::string& value) {
    const LoadResult result = load("[snmp]\nagentx = \"" + value + "\"\n");
    return result.config ? result.config->snmp.agentx : "error: " + describe(result);
  };
  EXPECT_EQ(agentx("agentx/master"), "/etc/pb/agentx/master");
  EXPECT_EQ(agentx("unix:/run/agentx.sock"), "/run/agentx.sock");
  EXPECT_EQ(agentx("tcp:127.0.0.1:705"), "tcp:127.0.0.1:705");
  EXPECT_EQ(agentx("tcp:[::1]:705"), "tcp6:[::1]:705");
}

TEST(ObservabilityConfig, ReportsBadAgentxValues) {
  // Verifies that an unsupported transport, a TCP address without a port and an empty socket are
  // errors at the value that say what is expected.
  EXPECT_TRUE(single_error(load("[snmp]\nagentx = \"udp:127.0.0.1:705\"\n"), 2, 10,
                           "agentx has an unsupported transport 'udp:'; expected a Unix socket "
                           "path such as \"/var/agentx/master\", \"unix:PATH\" or "
                           "\"tcp:HOST:PORT\""));
  EXPECT_TRUE(single_error(load("[snmp]\nagentx = \"tcp:127.0.0.1\"\n"), 2, 10, "agentx: "));
  EXPECT_TRUE(single_error(load("[snmp]\nagentx = \"\"\n"), 2, 10, "agentx must not be empty"));
  EXPECT_TRUE(
      single_error(load("[snmp]\nagentx = \"unix:\"\n"), 2, 10, "agentx must not be empty"));
}

TEST(ObservabilityConfig, AccessLogPathIsRelativeToStateDir) {
  // Verifies that a relative access log path is under state_dir (itself relative to the
  // configuration's folder), an absolute one is kept, and "-" (standard output) is left alone.
  const auto path = [](const std::string& toml) {
    const LoadResult result = load(toml);
    return result.config ? result.config->access_log.path.string() : "error: " + describe(result);
  };
  EXPECT_EQ(path("[service]\nstate_dir = \"state\"\n[access_log]\npath = \"a.log\"\n"),
            "/etc/pb/state/a.log");
  EXPECT_EQ(path("[access_log]\npath = \"/var/log/pb/access.log\"\n"), "/var/log/pb/access.log");
  EXPECT_EQ(path("[access_log]\npath = \"-\"\n"), "-");
}

TEST(ObservabilityConfig, ReportsEveryProblemOfTheSectionsInOneRun) {
  // Verifies that problems in several sections are all reported, in file order.
  const LoadResult result = load(R"([metrics]
listen = "nowhere"
[snmp]
agentx = "udp:1.2.3.4:705"
[access_log]
enabled = "no"
)");
  ASSERT_FALSE(result.config);
  ASSERT_EQ(result.errors.size(), 3U) << describe(result);
  EXPECT_EQ(result.errors[0].pos.line, 2U);
  EXPECT_EQ(result.errors[1].pos.line, 4U);
  EXPECT_EQ(result.errors[2].pos.line, 6U);
}

}  // namespace
}  // namespace pb::config
