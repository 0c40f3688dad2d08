// The Prometheus collector on a real (not started) Runtime: the text it renders from the
// run-time atomics, and the exporter serving it over HTTP.
#include "protobalance/metrics/prometheus.hpp"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>

#include "protobalance/balance/node.hpp"
#include "protobalance/control/runtime.hpp"
#include "protobalance/version.hpp"
#include "support/client.hpp"
#include "support/process.hpp"

namespace pb::metrics {
namespace {

using namespace std::chrono_literals;
using test::TempDir;

constexpr const char* kConfig = R"([service]
threads = 1

[[listener]]
name = "web"
listen = "127.0.0.1:0"
cluster = "web"

[[listener]]
name = "db"
listen = "127.0.0.1:0"
cluster = "db"

[[cluster]]
name = "web"

[[cluster.node]]
name = "alpha"
address = "127.0.0.1:9001"

[[cluster.node]]
name = "beta"
address = "127.0.0.1:9002"

[[cluster]]
name = "db"

[[cluster.node]]
name = "solo"
address = "127.0.0.1:9003"
)";

// A Runtime built from kConfig and never started: no socket is bound, no thread runs, and the
// test sets the counters that sessions would set.
class Collector : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loaded = control::load_config(dir_.write("pb.toml", kConfig));
    ASSERT_TRUE(loaded.config) << (loaded.errors.empty() ? "" : loaded.errors[0].to_string());
    runtime_ = std::make_unique<control::Runtime>(loaded.config, control::RuntimeOptions{1});
  }

  balance::NodeRuntime& node(const std::string& cluster, const std::string& name) {
    const auto snapshot = runtime_->snapshot();
    const auto& c = *snapshot->clusters.at(cluster);
    const std::int32_t index = c.find(name);
    if (index < 0) throw std::out_of_range(name);
    return *c.nodes()[static_cast<std::size_t>(index)].runtime;
  }

  StatusSource status_source() const {
    return [runtime = runtime_.get()] { return control::take_status(*runtime); };
  }
  std::string render(const ExtraSources& extra = {}) {
    return render_text(control::take_status(*runtime_), extra);
  }

  TempDir dir_;
  std::unique_ptr<control::Runtime> runtime_;
};

// True when `text` has `line` as one whole line.
::testing::AssertionResult has_line(const std::string& text, const std::string& line) {
  if (("\n" + text).find("\n" + line + "\n") != std::string::npos) {
    return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure() << "no line '" << line << "' in:\n" << text;
}

// The metric family names (from "# TYPE" lines) of a rendered text.
std::set<std::string> family_names(const std::string& text) {
  std::set<std::string> names;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("# TYPE ", 0) == 0) names.insert(line.substr(7, line.find(' ', 7) - 7));
  }
  return names;
}

ExtraSources every_source() {
  ExtraSources extra;
  extra.affinity_entries = [] { return std::uint64_t{42}; };
  extra.blocks = [] { return std::uint64_t{3}; };
  extra.affinity_lookups = [] {
    return std::map<std::string, AffinityLookups>{{"web", {10, 3, 2}}, {"db", {1, 0, 0}}};
  };
  extra.config_reloads = [] { return ConfigReloads{4, 1}; };
  extra.store_write_errors = [] { return std::uint64_t{6}; };
  extra.store_queue_depth = [] { return std::uint64_t{9}; };
  extra.access_log = [] { return AccessLogCounts{100, 7, 2}; };
  return extra;
}

TEST_F(Collector, ReportsEveryNodeCounterWithItsLabels) {
  // Verifies that each node counter is rendered with cluster and node labels and the exact
  // value of its atomic, failure reasons and byte directions as their own series.
  auto& alpha = node("web", "alpha");
  alpha.active = 3;
  alpha.total = 17;
  alpha.failures[static_cast<std::size_t>(balance::FailureReason::refused)] = 2;
  alpha.failures[static_cast<std::size_t>(balance::FailureReason::unreachable)] = 5;
  alpha.bytes_to_node = 1234;
  alpha.bytes_to_client = 98765;
  alpha.failovers = 4;
  node("db", "solo").failures[static_cast<std::size_t>(balance::FailureReason::timeout)] = 1;

  const std::string text = render();
  const std::string web_alpha = R"(cluster="web",node="alpha")";
  EXPECT_TRUE(has_line(text, "protobalance_node_connections_active{" + web_alpha + "} 3"));
  EXPECT_TRUE(has_line(text, "protobalance_node_connections_total{" + web_alpha + "} 17"));
  EXPECT_TRUE(has_line(
      text, "protobalance_node_connect_failures_total{" + web_alpha + R"(,reason="refused"} 2)"));
  EXPECT_TRUE(has_line(text, "protobalance_node_connect_failures_total{" + web_alpha +
                                 R"(,reason="unreachable"} 5)"));
  EXPECT_TRUE(has_line(
      text, "protobalance_node_connect_failures_total{" + web_alpha + R"(,reason="timeout"} 0)"));
  EXPECT_TRUE(has_line(
      text,
      R"(protobalance_node_connect_failures_total{cluster="db",node="solo",reason="timeout"} 1)"));
  EXPECT_TRUE(has_line(
      text, "protobalance_node_bytes_total{" + web_alpha + R"(,direction="to_node"} 1234)"));
  EXPECT_TRUE(has_line(
      text, "protobalance_node_bytes_total{" + web_alpha + R"(,direction="to_client"} 98765)"));
  EXPECT_TRUE(has_line(text, "protobalance_failovers_total{" + web_alpha + "} 4"));
  EXPECT_TRUE(
      has_line(text, R"(protobalance_node_connections_total{cluster="web",node="beta"} 0)"));
  EXPECT_TRUE(has_line(text, "# TYPE protobalance_node_connections_total counter"));
  EXPECT_TRUE(has_line(text, "# TYPE protobalance_node_connections_active gauge"));
}

TEST_F(Collector, RendersConnectTimesAsACumulativeHistogramInSeconds) {
  // Verifies that the per-bucket counts become cumulative buckets with the configured bounds, a
  // +Inf bucket equal to the count, and the sum in seconds.
  auto& beta = node("web", "beta");
  beta.record_connect_time(150us);  // <= 0.00025
  beta.record_connect_time(300us);  // <= 0.0005
  beta.record_connect_time(2ms);    // <= 0.0025
  beta.record_connect_time(20s);    // beyond 10 s: +Inf only

  const std::string text = render();
  const std::string prefix =
      R"(protobalance_node_connect_duration_seconds_bucket{cluster="web",node="beta",le=")";
  EXPECT_TRUE(has_line(text, "# TYPE protobalance_node_connect_duration_seconds histogram"));
  EXPECT_TRUE(has_line(text, prefix + R"(0.0001"} 0)"));
  EXPECT_TRUE(has_line(text, prefix + R"(0.00025"} 1)"));
  EXPECT_TRUE(has_line(text, prefix + R"(0.0005"} 2)"));
  EXPECT_TRUE(has_line(text, prefix + R"(0.001"} 2)"));
  EXPECT_TRUE(has_line(text, prefix + R"(0.0025"} 3)"));
  EXPECT_TRUE(has_line(text, prefix + R"(10"} 3)"));
  EXPECT_TRUE(has_line(text, prefix + R"(+Inf"} 4)"));
  EXPECT_TRUE(has_line(
      text, R"(protobalance_node_connect_duration_seconds_count{cluster="web",node="beta"} 4)"));
  EXPECT_TRUE(has_line(
      text,
      R"(protobalance_node_connect_duration_seconds_sum{cluster="web",node="beta"} 20.00245)"));
}

TEST_F(Collector, ReportsStateAsANumberAndUpAsABoolean) {
  // Verifies node_state 0/1/2 for available/draining/offline and node_up 0 while the node is
  // marked unavailable.
  node("web", "beta").admin_state = config::AdminState::draining;
  node("db", "solo").admin_state = config::AdminState::offline;
  node("web", "alpha").unavailable_since_ns = 12345;

  const std::string text = render();
  EXPECT_TRUE(has_line(text, R"(protobalance_node_state{cluster="web",node="alpha"} 0)"));
  EXPECT_TRUE(has_line(text, R"(protobalance_node_state{cluster="web",node="beta"} 1)"));
  EXPECT_TRUE(has_line(text, R"(protobalance_node_state{cluster="db",node="solo"} 2)"));
  EXPECT_TRUE(has_line(text, R"(protobalance_node_up{cluster="web",node="alpha"} 0)"));
  EXPECT_TRUE(has_line(text, R"(protobalance_node_up{cluster="web",node="beta"} 1)"));
}

TEST_F(Collector, ReportsListenerCountersRoutesAndServiceMetrics) {
  // Verifies the listener counters with their reject reasons, the routes, build info, accept
  // pauses and a plausible process start time.
  auto stats = runtime_->listener_stats();
  stats.at("web")->connections = 9;
  stats.at("web")->active = 4;
  stats.at("db")->rejected[static_cast<std::size_t>(net::RejectReason::no_node)] = 2;

  const std::string text = render();
  EXPECT_TRUE(has_line(text, R"(protobalance_listener_connections_total{listener="web"} 9)"));
  EXPECT_TRUE(has_line(text, R"(protobalance_listener_connections_active{listener="web"} 4)"));
  EXPECT_TRUE(
      has_line(text, R"(protobalance_listener_rejected_total{listener="db",reason="no_node"} 2)"));
  EXPECT_TRUE(has_line(
      text, R"(protobalance_listener_rejected_total{listener="db",reason="descriptors"} 0)"));
  EXPECT_TRUE(has_line(text, R"(protobalance_listener_route{listener="db",cluster="db"} 1)"));
  EXPECT_TRUE(
      has_line(text, std::string(R"(protobalance_build_info{version=")") + pb::kVersion + "\"} 1"));
  EXPECT_TRUE(has_line(text, "protobalance_accept_pauses_total 0"));
  EXPECT_TRUE(has_line(text, "protobalance_client_connections_active 0"));

  std::smatch start;
  ASSERT_TRUE(std::regex_search(text, start,
                                std::regex("\nprotobalance_process_start_time_seconds (\\S+)\n")));
  const double started = std::stod(start[1]);
  const double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_LE(started, now);
  EXPECT_GT(started, now - 3600);
}

TEST_F(Collector, ExportsSourcedMetricsOnlyWhenTheirSourceIsSet) {
  // Verifies that affinity, reload, store and access log metrics are absent without a source
  // and carry the source's values, by label, when it is set.
  const std::string bare = render();
  for (const char* name :
       {"protobalance_affinity_entries", "protobalance_affinity_lookups_total",
        "protobalance_config_reloads_total", "protobalance_store_write_errors_total",
        "protobalance_affinity_store_queue_depth", "protobalance_access_log_records_total",
        "protobalance_blocks"}) {
    EXPECT_EQ(bare.find(name), std::string::npos) << name;
  }

  const std::string text = render(every_source());
  EXPECT_TRUE(has_line(text, "protobalance_affinity_entries 42"));
  EXPECT_TRUE(has_line(text, "protobalance_blocks 3"));
  EXPECT_TRUE(
      has_line(text, R"(protobalance_affinity_lookups_total{cluster="web",result="hit"} 10)"));
  EXPECT_TRUE(
      has_line(text, R"(protobalance_affinity_lookups_total{cluster="web",result="miss"} 3)"));
  EXPECT_TRUE(
      has_line(text, R"(protobalance_affinity_lookups_total{cluster="web",result="moved"} 2)"));
  EXPECT_TRUE(
      has_line(text, R"(protobalance_affinity_lookups_total{cluster="db",result="hit"} 1)"));
  EXPECT_TRUE(has_line(text, R"(protobalance_config_reloads_total{result="ok"} 4)"));
  EXPECT_TRUE(has_line(text, R"(protobalance_config_reloads_total{result="error"} 1)"));
  EXPECT_TRUE(has_line(text, "protobalance_store_write_errors_total 6"));
  EXPECT_TRUE(has_line(text, "protobalance_affinity_store_queue_depth 9"));
  EXPECT_TRUE(has_line(text, R"(protobalance_access_log_records_total{result="dropped"} 7)"));
}

TEST_F(Collector, ExportsTheTwinLinkOnlyWithTwin) {
  // Verifies that the twin metrics are absent without [twin], and with it carry the link's
  // state and counters by direction and result.
  auto status = control::take_status(*runtime_);
  EXPECT_EQ(render_text(status, {}).find("protobalance_twin_"), std::string::npos);
  control::TwinStatus& twin = status.twin.emplace();
  twin.connected = true;
  twin.messages_sent = 12;
  twin.messages_received = 9;
  twin.lookups_hit = 3;
  twin.lookups_miss = 14;
  twin.lookups_timeout = 2;
  const std::string text = render_text(status, {});
  EXPECT_TRUE(has_line(text, "protobalance_twin_connected 1"));
  EXPECT_TRUE(has_line(text, R"(protobalance_twin_messages_total{direction="sent"} 12)"));
  EXPECT_TRUE(has_line(text, R"(protobalance_twin_messages_total{direction="received"} 9)"));
  EXPECT_TRUE(has_line(text, R"(protobalance_twin_lookups_total{result="hit"} 3)"));
  EXPECT_TRUE(has_line(text, R"(protobalance_twin_lookups_total{result="miss"} 14)"));
  EXPECT_TRUE(has_line(text, R"(protobalance_twin_lookups_total{result="timeout"} 2)"));
  twin.connected = false;
  EXPECT_TRUE(has_line(render_text(status, {}), "protobalance_twin_connected 0"));
}

TEST_F(Collector, ExportsCheckFailuresAgentValuesAndCheckDownAsNotUp) {
  // Verifies the node health metrics (issue 12): failed checks by reason, the agent's values by
  // name, and node_up 0 for a node down by its checks or its agent.
  auto& alpha = node("web", "alpha");
  alpha.check_failures[static_cast<std::size_t>(balance::CheckResult::mismatch)] = 4;
  alpha.check_down = true;
  node("web", "beta").agent_down = true;
  {
    std::lock_guard lock(alpha.agent_mutex);
    alpha.agent_values = {{"cpu", 0.72}, {"sessions", 130}};
  }
  const std::string text = render();
  EXPECT_TRUE(has_line(
      text,
      R"(protobalance_node_check_failures_total{cluster="web",node="alpha",reason="mismatch"} 4)"));
  EXPECT_TRUE(has_line(
      text,
      R"(protobalance_node_check_failures_total{cluster="web",node="alpha",reason="timeout"} 0)"));
  EXPECT_TRUE(has_line(
      text, R"(protobalance_node_agent_value{cluster="web",node="alpha",name="cpu"} 0.72)"));
  EXPECT_TRUE(has_line(
      text, R"(protobalance_node_agent_value{cluster="web",node="alpha",name="sessions"} 130)"));
  EXPECT_TRUE(has_line(text, R"(protobalance_node_up{cluster="web",node="alpha"} 0)"));
  EXPECT_TRUE(has_line(text, R"(protobalance_node_up{cluster="web",node="beta"} 0)"));
  EXPECT_TRUE(has_line(text, R"(protobalance_node_up{cluster="db",node="solo"} 1)"));
}

TEST_F(Collector, ExportsEveryMetricNameOfTheContract) {
  // Verifies that every metric name of DESIGN.md's contract is a family of the exporter (with
  // every source set), with help text.
  const std::string text = render(every_source());
  const auto names = family_names(text);
  for (const char* name :
       {"node_connections_active", "node_connections_total", "node_connect_failures_total",
        "node_bytes_total", "node_connect_duration_seconds", "node_state", "node_up",
        "failovers_total", "affinity_entries", "affinity_lookups_total",
        "listener_connections_total", "listener_rejected_total", "config_reloads_total",
        "build_info", "process_start_time_seconds", "accept_pauses_total",
        "store_write_errors_total", "blocks"}) {
    const std::string full = std::string("protobalance_") + name;
    EXPECT_TRUE(names.contains(full)) << full;
    EXPECT_NE(text.find("# HELP " + full + " "), std::string::npos) << full;
  }
}

TEST_F(Collector, DashboardQueriesOnlyMetricsTheExporterExports) {
  // Verifies that every protobalance_ metric in the Grafana dashboard's queries is one the
  // exporter exports when all its sources are wired (histogram series by their family).
  std::ifstream file(std::string(PB_SOURCE_DIR) + "/config/grafana/protobalance.json");
  ASSERT_TRUE(file) << "config/grafana/protobalance.json is missing";
  const std::string json((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  {
    // Agent values exist only once an agent reported one ([cluster.agent]).
    auto& alpha = node("web", "alpha");
    std::lock_guard lock(alpha.agent_mutex);
    alpha.agent_values = {{"cpu", 0.5}};
  }
  // The twin metrics exist only with [twin].
  auto status = control::take_status(*runtime_);
  status.twin.emplace();
  const auto names = family_names(render_text(status, every_source()));
  const std::regex metric("protobalance_[a-z0-9_]+");
  int checked = 0;
  for (std::sregex_iterator it(json.begin(), json.end(), metric), end; it != end; ++it) {
    std::string name = it->str();
    for (const char* suffix : {"_bucket", "_count", "_sum"}) {
      const std::string s(suffix);
      if (!names.contains(name) && name.size() > s.size() &&
          name.compare(name.size() - s.size(), s.size(), s) == 0) {
        name.resize(name.size() - s.size());
      }
    }
    EXPECT_TRUE(names.contains(name)) << it->str() << " is queried but not exported";
    ++checked;
  }
  EXPECT_GT(checked, 10);
}

// ---- the exporter over HTTP ----

// Sends a plain HTTP GET to 127.0.0.1:port and returns the whole response.
std::string http_get(std::uint16_t port, const std::string& path) {
  test::Client client("127.0.0.1:" + std::to_string(port));
  if (!client.connected()) return "connect failed: " + client.error();
  client.send_all("GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  return client.recv_all(test::in(10s));
}

TEST_F(Collector, ExporterServesTheMetricsOverHttp) {
  // Verifies that the exporter binds port 0 to a free port, reports it, and answers GET
  // /metrics with 200 and the collector's text.
  node("web", "alpha").total = 31;
  config::MetricsConfig cfg;
  cfg.listen = "127.0.0.1:0";
  cfg.endpoint = config::Endpoint(boost::asio::ip::make_address("127.0.0.1"), 0);
  PrometheusExporter exporter(status_source(), cfg, {});
  std::smatch port;
  const std::string address = exporter.address();
  ASSERT_TRUE(std::regex_match(address, port, std::regex(R"(127\.0\.0\.1:(\d+))"))) << address;
  ASSERT_NE(port[1], "0");

  const std::string response = http_get(static_cast<std::uint16_t>(std::stoi(port[1])), "/metrics");
  EXPECT_EQ(response.rfind("HTTP/1.1 200", 0), 0U) << response;
  EXPECT_NE(
      response.find("\nprotobalance_node_connections_total{cluster=\"web\",node=\"alpha\"} 31\n"),
      std::string::npos)
      << response;
}

TEST_F(Collector, ExporterRefusesAnAddressInUseWithAClearMessage) {
  // Verifies that a port already taken is a std::runtime_error naming the address and the
  // system's reason, not civetweb's generic message.
  const int taken = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(taken, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(taken, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::listen(taken, 1), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::getsockname(taken, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const auto port = ntohs(addr.sin_port);

  config::MetricsConfig cfg;
  cfg.listen = "127.0.0.1:" + std::to_string(port);
  cfg.endpoint = config::Endpoint(boost::asio::ip::make_address("127.0.0.1"), port);
  try {
    PrometheusExporter exporter(status_source(), cfg, {});
    ADD_FAILURE() << "the exporter started on a port in use";
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    EXPECT_EQ(message.rfind("metrics: cannot listen on " + cfg.listen + ": ", 0), 0U) << message;
    EXPECT_NE(message.find("Address already in use"), std::string::npos) << message;
  }
  ::close(taken);
}

}  // namespace
}  // namespace pb::metrics
