// End-to-end tests of monitoring: the real protobalance binary with its Prometheus exporter and
// SNMP sub-agent, real backends and clients, and the real tools operators use (promtool,
// snmpd as AgentX master, snmpwalk, snmptranslate). Everything on loopback.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/backend.hpp"
#include "support/client.hpp"
#include "support/process.hpp"
#include "support/redis_server.hpp"
#include "support/scrape.hpp"

namespace pb::test {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const std::string kSourceDir = PB_SOURCE_DIR;

// Metrics that the exporter reports only once main.cpp hands it their source
// (metrics::ExtraSources); the unit tests check them with every source set.
// Exported only when its feature is on ([access_log] enabled), which the patterns here leave off.
const std::set<std::string> kSourcedMetrics = {"protobalance_access_log_records_total",
                                               // only once an agent reported ([cluster.agent])
                                               "protobalance_node_agent_value",
                                               // only with [twin] (twin_test.cpp)
                                               "protobalance_twin_connected",
                                               "protobalance_twin_messages_total",
                                               "protobalance_twin_lookups_total"};

// ---- Prometheus helpers (and support/scrape.hpp) ----

// Node series name: protobalance_<name>{cluster="c",node="n"<extra>}.
std::string node_series(const std::string& name, const std::string& cluster,
                        const std::string& node, const std::string& extra = "") {
  return "protobalance_" + name + "{cluster=\"" + cluster + "\",node=\"" + node + "\"" + extra +
         "}";
}

// A TCP port on 127.0.0.1 that is bound and listening (so nobody else can bind it) until the
// object is destroyed.
class TakenPort {
 public:
  TakenPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::listen(fd_, 1) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      throw std::runtime_error("TakenPort: cannot listen");
    }
    port_ = ntohs(addr.sin_port);
  }
  ~TakenPort() { ::close(fd_); }
  TakenPort(const TakenPort&) = delete;
  TakenPort& operator=(const TakenPort&) = delete;
  std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

// A UDP port on 127.0.0.1 that was free a moment ago (for snmpd's agent address).
std::uint16_t free_udp_port() {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Sends `size` bytes through the balancer and reads them back from an echo node, then closes
// both ways; returns whether every byte came back.
bool echo_round_trip(const std::string& address, std::size_t size, unsigned seed) {
  Client client(address);
  if (!client.connected()) return false;
  const std::string payload = random_bytes(size, seed);
  std::string back;
  std::thread reader([&] { back = client.recv_exact(size, in(10s)); });
  const bool sent = client.send_all(payload);
  reader.join();
  client.shutdown_write();
  return sent && back == payload && client.wait_closed(in(10s)) == PeerClose::eof;
}

// The configuration of the known traffic pattern: cluster "web" has an echo node (alpha), a node
// whose port refuses (beta) and a draining node (gamma); cluster "db" has a node that never
// answers a SYN (hole) and one that closes every connection at once (closer). A failed node
// stays down for the whole test (retry_interval 1h).
std::string pattern_config(const std::string& extra, const Backend& alpha, const Backend& gamma,
                           const BlackHole& hole, const Backend& closer,
                           const std::string& refused) {
  return extra + R"(
[service]
threads = 1
state_dir = "var"

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
retry_interval = "1h"

[[cluster.node]]
name = "alpha"
address = ")" +
         alpha.address() + R"("

[[cluster.node]]
name = "beta"
address = ")" +
         refused + R"("

[[cluster.node]]
name = "gamma"
address = ")" +
         gamma.address() + R"("
state = "draining"

[[cluster]]
name = "db"
connect_timeout = "300ms"
retry_interval = "1h"

[[cluster.node]]
name = "hole"
address = ")" +
         hole.address() + R"("

[[cluster.node]]
name = "closer"
address = ")" +
         closer.address() + R"("
)";
}

// The backends and the balancer of the known pattern, with the traffic already sent:
// kWebClients echo round trips on "web" (sizes 1000, 2000, ...) and one silent client on "db"
// that no node can serve.
struct KnownPattern {
  static constexpr int kWebClients = 5;
  static constexpr std::uint64_t kWebBytes = 1000 + 2000 + 3000 + 4000 + 5000;

  explicit KnownPattern(const std::string& extra_config) {
    const auto file =
        dir.write("pb.toml", pattern_config(extra_config, alpha, gamma, hole, closer, refused));
    balancer = std::make_unique<Balancer>(std::vector<std::string>{"--config", file.string()});
  }

  // Sends the traffic; returns false (with a test failure) when a client was not served as the
  // pattern expects.
  bool send_traffic() {
    for (int i = 1; i <= kWebClients; ++i) {
      if (!echo_round_trip(balancer->address("web"), static_cast<std::size_t>(i) * 1000,
                           static_cast<unsigned>(i))) {
        ADD_FAILURE() << "web client " << i << " was not echoed";
        return false;
      }
    }
    Client silent(balancer->address("db"));
    if (!silent.connected()) {
      ADD_FAILURE() << "db client could not connect: " << silent.error();
      return false;
    }
    // Neither db node can serve it: the balancer closes the client once both have failed.
    if (silent.wait_closed(in(10s)) == PeerClose::timeout) {
      ADD_FAILURE() << "the db client was not closed";
      return false;
    }
    return true;
  }

  TempDir dir;
  Backend alpha{"alpha"};
  Backend gamma{"gamma"};
  Backend closer{"closer", BackendMode::close_at_once};
  BlackHole hole;
  std::string refused = closed_port_address();
  std::unique_ptr<Balancer> balancer;
};

// Scrapes until the pattern's sessions have all ended and been counted (bytes are added when a
// session ends), or the deadline passes; returns the last scrape.
Scrape settled_scrape(const std::string& address) {
  std::optional<Scrape> last;
  eventually(
      [&] {
        const auto body = http_get(address, "/metrics");
        if (!body) return false;
        last.emplace(*body);
        const Scrape& s = *last;
        // Every session has ended (a scrape can fall between a session's last counters and
        // the end of its bookkeeping).
        return s("protobalance_client_connections_active") == 0 &&
               s(R"(protobalance_listener_connections_total{listener="web"})") == 5 &&
               s(R"(protobalance_listener_rejected_total{listener="db",reason="no_node"})") == 1 &&
               s(node_series("node_connections_active", "web", "alpha")) == 0 &&
               s(node_series("node_bytes_total", "web", "alpha", R"(,direction="to_client")")) ==
                   static_cast<double>(KnownPattern::kWebBytes);
      },
      in(10s));
  return last ? *last : Scrape("");
}

TEST(Metrics, CountsMatchAKnownPatternOfConnectionsExactly) {
  // Verifies, after a known pattern of connections, the exact per-node totals, bytes, failure
  // reasons, fall-overs, histogram counts, states, up/down and listener counters in /metrics.
  KnownPattern pattern("[metrics]\nlisten = \"127.0.0.1:0\"\n");
  const std::string address = pattern.balancer->metrics_address();
  ASSERT_FALSE(address.empty()) << pattern.balancer->process().output();
  ASSERT_TRUE(pattern.send_traffic());
  const Scrape s = settled_scrape(address);
  ASSERT_FALSE(s.samples.empty()) << "no scrape of http://" << address << "/metrics";

  const auto web = [](const std::string& name, const std::string& node,
                      const std::string& extra = "") {
    return node_series(name, "web", node, extra);
  };
  const auto db = [](const std::string& name, const std::string& node,
                     const std::string& extra = "") {
    return node_series(name, "db", node, extra);
  };
  const auto reason = [](const char* r) { return std::string(",reason=\"") + r + "\""; };

  // web: every client echoed by alpha; beta refused once and stayed down; gamma drains.
  EXPECT_EQ(s(web("node_connections_total", "alpha")), 5) << s.text;
  EXPECT_EQ(s(web("node_bytes_total", "alpha", R"(,direction="to_node")")),
            KnownPattern::kWebBytes);
  EXPECT_EQ(s(web("node_bytes_total", "alpha", R"(,direction="to_client")")),
            KnownPattern::kWebBytes);
  EXPECT_EQ(s(web("node_connect_duration_seconds_count", "alpha")), 5);
  EXPECT_EQ(s(web("node_connect_duration_seconds_bucket", "alpha", R"(,le="+Inf")")), 5);
  EXPECT_EQ(s(web("failovers_total", "alpha")), 0);
  EXPECT_EQ(s(web("node_up", "alpha")), 1);
  EXPECT_EQ(s(web("node_state", "alpha")), 0);
  for (const char* r : {"refused", "timeout", "reset", "closed", "unreachable"}) {
    EXPECT_EQ(s(web("node_connect_failures_total", "alpha", reason(r))), 0) << r;
    EXPECT_EQ(s(web("node_connect_failures_total", "beta", reason(r))),
              std::string(r) == "refused" ? 1 : 0)
        << r;
  }
  EXPECT_EQ(s(web("node_connections_total", "beta")), 0);
  EXPECT_EQ(s(web("failovers_total", "beta")), 1);
  EXPECT_EQ(s(web("node_up", "beta")), 0);
  EXPECT_EQ(s(web("node_connect_duration_seconds_count", "beta")), 0);
  EXPECT_EQ(s(web("node_connections_total", "gamma")), 0);
  EXPECT_EQ(s(web("node_state", "gamma")), 1);
  EXPECT_EQ(s(web("node_bytes_total", "gamma", R"(,direction="to_node")")), 0);

  // db: the silent client timed out on hole and was closed by closer, then rejected.
  EXPECT_EQ(s(db("node_connect_failures_total", "hole", reason("timeout"))), 1);
  EXPECT_EQ(s(db("node_connect_failures_total", "hole", reason("refused"))), 0);
  EXPECT_EQ(s(db("node_connections_total", "hole")), 0);
  EXPECT_EQ(s(db("failovers_total", "hole")), 1);
  EXPECT_EQ(s(db("node_connect_failures_total", "closer", reason("closed"))), 1);
  EXPECT_EQ(s(db("node_connections_total", "closer")), 1);  // established, then closed at once
  EXPECT_EQ(s(db("failovers_total", "closer")), 1);
  EXPECT_EQ(s(db("node_bytes_total", "closer", R"(,direction="to_client")")), 0);
  EXPECT_EQ(s(db("node_up", "hole")), 0);
  EXPECT_EQ(s(db("node_up", "closer")), 0);

  EXPECT_EQ(s(R"(protobalance_listener_connections_total{listener="web"})"), 5);
  EXPECT_EQ(s(R"(protobalance_listener_rejected_total{listener="web",reason="no_node"})"), 0);
  EXPECT_EQ(s(R"(protobalance_listener_connections_total{listener="db"})"), 1);
  EXPECT_EQ(s(R"(protobalance_listener_connections_active{listener="web"})"), 0);
  EXPECT_EQ(s(R"(protobalance_listener_rejected_total{listener="db",reason="no_node"})"), 1);
  EXPECT_EQ(s("protobalance_client_connections_active"), 0);
  EXPECT_EQ(s("protobalance_accept_pauses_total"), 0);
}

TEST(Metrics, ExportsTheContractAndPromtoolAcceptsIt) {
  // Verifies that every always-available metric of the contract is in a real scrape with its
  // help text, and that `promtool check metrics` accepts the whole exposition.
  KnownPattern pattern("[metrics]\nlisten = \"127.0.0.1:0\"\n");
  const std::string address = pattern.balancer->metrics_address();
  ASSERT_FALSE(address.empty()) << pattern.balancer->process().output();
  ASSERT_TRUE(pattern.send_traffic());
  const Scrape s = settled_scrape(address);
  for (const char* name :
       {"node_connections_active", "node_connections_total", "node_connect_failures_total",
        "node_bytes_total", "node_connect_duration_seconds", "node_state", "node_up",
        "failovers_total", "listener_connections_total", "listener_connections_active",
        "listener_rejected_total", "build_info", "process_start_time_seconds",
        "accept_pauses_total", "client_connections_active", "node_connect_latency_ewma_seconds"}) {
    const std::string full = std::string("protobalance_") + name;
    EXPECT_TRUE(s.families.contains(full)) << full;
    EXPECT_NE(s.text.find("# HELP " + full + " "), std::string::npos) << full;
  }
  EXPECT_NE(s.text.find("\nprotobalance_build_info{version=\""), std::string::npos);

  const auto file = pattern.dir.write("scrape.txt", s.text);
  const RunResult promtool =
      run({"/bin/sh", "-c", "promtool check metrics < '" + file.string() + "'"});
  EXPECT_EQ(promtool.exit_code, 0) << promtool.output;
}

// Every protobalance_ metric named in `text` (histogram series by their family name).
std::set<std::string> metric_names_in(const std::string& text,
                                      const std::set<std::string>& families) {
  std::set<std::string> names;
  const std::regex metric("protobalance_[a-z0-9_]+");
  for (std::sregex_iterator it(text.begin(), text.end(), metric), end; it != end; ++it) {
    std::string name = it->str();
    for (const std::string suffix : {"_bucket", "_count", "_sum"}) {
      if (!families.contains(name) && name.ends_with(suffix)) {
        name.resize(name.size() - suffix.size());
      }
    }
    names.insert(name);
  }
  return names;
}

// Every "expr" and variable "query"/"definition" string in a Grafana dashboard.
void collect_queries(const boost::json::value& v, std::vector<std::string>& out) {
  if (const auto* o = v.if_object()) {
    for (const auto& [key, value] : *o) {
      if ((key == "expr" || key == "query" || key == "definition") && value.is_string()) {
        out.emplace_back(value.as_string());
      }
      collect_queries(value, out);
    }
  } else if (const auto* a = v.if_array()) {
    for (const auto& element : *a) collect_queries(element, out);
  }
}

std::string read_file(const fs::path& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST(Metrics, DashboardAndAlertsQueryOnlyExportedMetrics) {
  // Verifies that the Grafana dashboard takes its data source from a variable, has cluster and
  // node variables, and that every metric it or the alert rules query is exported by a running
  // exporter (the access log's counter only when the log is on; see its unit tests).
  KnownPattern pattern("[metrics]\nlisten = \"127.0.0.1:0\"\n");
  const std::string address = pattern.balancer->metrics_address();
  ASSERT_FALSE(address.empty()) << pattern.balancer->process().output();
  const auto body = http_get(address, "/metrics");
  ASSERT_TRUE(body);
  const Scrape s(*body);

  const std::string json = read_file(kSourceDir + "/config/grafana/protobalance.json");
  boost::system::error_code ec;
  const boost::json::value dashboard = boost::json::parse(json, ec);
  ASSERT_FALSE(ec) << "protobalance.json: " << ec.message();

  std::map<std::string, std::string> variables;  // name -> type
  for (const auto& v : dashboard.at("templating").at("list").as_array()) {
    variables[std::string(v.at("name").as_string())] = std::string(v.at("type").as_string());
  }
  EXPECT_EQ(variables["datasource"], "datasource");
  EXPECT_EQ(variables["cluster"], "query");
  EXPECT_EQ(variables["node"], "query");
  int panels = 0;
  for (const auto& panel : dashboard.at("panels").as_array()) {
    if (panel.at("type").as_string() == "row") continue;
    ++panels;
    EXPECT_EQ(panel.at("datasource").at("uid").as_string(), "${datasource}")
        << panel.at("title").as_string();
    ASSERT_FALSE(panel.at("targets").as_array().empty()) << panel.at("title").as_string();
  }
  EXPECT_GE(panels, 12);

  std::vector<std::string> queries;
  collect_queries(dashboard, queries);
  std::string all_queries;
  for (const auto& q : queries) all_queries += q + "\n";
  all_queries += read_file(kSourceDir + "/config/prometheus/alerts.yml");
  const auto names = metric_names_in(all_queries, s.families);
  EXPECT_GE(names.size(), 12U);
  for (const auto& name : names) {
    EXPECT_TRUE(s.families.contains(name) || kSourcedMetrics.contains(name))
        << name << " is queried but not exported";
  }
}

TEST(Metrics, PrometheusConfigExamplesAreValid) {
  // Verifies that promtool accepts the scrape configuration example and the alerting rules.
  const RunResult config = run({"/usr/bin/env", "promtool", "check", "config",
                                kSourceDir + "/config/prometheus/scrape.yml"});
  EXPECT_EQ(config.exit_code, 0) << config.output;
  const RunResult rules = run(
      {"/usr/bin/env", "promtool", "check", "rules", kSourceDir + "/config/prometheus/alerts.yml"});
  EXPECT_EQ(rules.exit_code, 0) << rules.output;
}

TEST(Metrics, PortInUseIsAStartupErrorWithAClearMessage) {
  // Verifies that a [metrics] listen address that cannot be bound stops the start-up with exit
  // code 1 and a message naming the address and the reason, before any listener is bound.
  TakenPort taken;
  Backend alpha("alpha");
  TempDir dir;
  const std::string listen = "127.0.0.1:" + std::to_string(taken.port());
  const auto file = dir.write("pb.toml", "[metrics]\nlisten = \"" + listen + R"("
[service]
state_dir = "var"
[[listener]]
name = "web"
listen = "127.0.0.1:0"
cluster = "web"
[[cluster]]
name = "web"
[[cluster.node]]
name = "alpha"
address = ")" + alpha.address() + "\"\n");
  const RunResult result = run({binary("protobalance"), "--config", file.string()}, in(20s));
  EXPECT_EQ(result.exit_code, 1) << result.output;
  EXPECT_NE(result.output.find("metrics: cannot listen on " + listen + ": "), std::string::npos)
      << result.output;
  EXPECT_NE(result.output.find("Address already in use"), std::string::npos) << result.output;
  EXPECT_EQ(result.output.find("listener web on"), std::string::npos) << result.output;
}

TEST(Metrics, NoExporterWithoutAListenAddress) {
  // Verifies that without [metrics] listen (and with listen = "") no exporter is started.
  Backend alpha("alpha");
  for (const std::string section : {"", "[metrics]\nlisten = \"\"\n"}) {
    TempDir dir;
    const auto file = dir.write("pb.toml", section + R"(
[service]
state_dir = "var"
[[listener]]
name = "web"
listen = "127.0.0.1:0"
cluster = "web"
[[cluster]]
name = "web"
[[cluster.node]]
name = "alpha"
address = ")" + alpha.address() + "\"\n");
    Balancer balancer({"--config", file.string()});
    ASSERT_TRUE(echo_round_trip(balancer.address("web"), 10, 1));
    EXPECT_EQ(balancer.process().output().find("metrics: serving"), std::string::npos)
        << balancer.process().output();
  }
}

// ---- SNMP ----

// A real net-snmp snmpd acting as AgentX master on a Unix socket in `dir`, answering SNMPv2c
// (community "public") on a UDP loopback port.
class SnmpMaster {
 public:
  SnmpMaster(const fs::path& dir, std::uint16_t udp_port)
      : socket_((dir / "agentx.sock").string()), udp_port_(udp_port) {
    fs::create_directories(dir / "state");
    // persistentDir keeps snmpd's state file away from this configuration (it would overwrite
    // a file of the same name) and out of /var/lib/snmp.
    conf_ = dir / "master.conf";
    std::ofstream(conf_) << "master agentx\n"
                         << "agentXSocket " << socket_ << "\n"
                         << "agentaddress udp:127.0.0.1:" << udp_port_ << "\n"
                         << "rocommunity public 127.0.0.1\n"
                         << "[snmp] persistentDir " << (dir / "state").string() << "\n";
    start();
  }

  // Starts snmpd and waits until it serves; fails the test if it does not.
  void start() {
    // MIBS= keeps snmpd from loading (and complaining about) the system's MIB files.
    process_ = std::make_unique<Process>(std::vector<std::string>{
        "/usr/bin/env", "MIBS=", "snmpd", "-f", "-Lo", "-C", "-c", conf_.string()});
    if (!process_->wait_for(std::regex("NET-SNMP version"), in(10s))) {
      ADD_FAILURE() << "snmpd did not start:\n" << process_->output();
    }
  }

  // Stops snmpd (SIGTERM) and waits for it to exit.
  void stop() {
    process_->signal(SIGTERM);
    if (!process_->wait_exit(in(10s))) ADD_FAILURE() << "snmpd did not stop";
  }

  const std::string& socket() const { return socket_; }
  std::string agent() const { return "127.0.0.1:" + std::to_string(udp_port_); }

 private:
  std::string socket_;
  std::uint16_t udp_port_;
  fs::path conf_;
  std::unique_ptr<Process> process_;
};

// Runs an SNMP command-line tool with PROTOBALANCE-MIB from config/snmp (and no other MIB).
RunResult snmp_tool(const std::string& tool, std::vector<std::string> args) {
  std::vector<std::string> argv{
      "/usr/bin/env", "MIBS=", tool, "-M", kSourceDir + "/config/snmp", "-m", "PROTOBALANCE-MIB"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv, in(20s));
}

// `snmpwalk -OQUs -Oe` output as object -> value ("pbNodeTotal.\"web\".\"alpha\"" -> "5"),
// quotes around strings removed.
std::map<std::string, std::string> walk(const SnmpMaster& master, const std::string& oid) {
  const RunResult result = snmp_tool("snmpwalk", {"-v2c", "-c", "public", "-t", "2", "-r", "1",
                                                  "-OQUs", "-Oe", master.agent(), oid});
  std::map<std::string, std::string> values;
  if (result.exit_code != 0) return values;
  std::istringstream in(result.output);
  std::string line;
  while (std::getline(in, line)) {
    const auto eq = line.find(" = ");
    if (eq == std::string::npos) continue;
    std::string value = line.substr(eq + 3);
    if (value.starts_with("No Such")) continue;  // nothing there (an absent group)
    if (value.size() >= 2 && value.front() == '"' && value.back() == '"') {
      value = value.substr(1, value.size() - 2);
    }
    values[line.substr(0, eq)] = value;
  }
  return values;
}

// pbVersion.0 through the master, or "" when the sub-agent does not answer.
std::string snmp_version(const SnmpMaster& master) {
  const RunResult result =
      snmp_tool("snmpget", {"-v2c", "-c", "public", "-t", "1", "-r", "0", "-OQUsv", master.agent(),
                            "PROTOBALANCE-MIB::pbVersion.0"});
  std::string value = result.exit_code == 0 ? result.output : "";
  while (!value.empty() && (value.back() == '\n' || value.back() == '"')) value.pop_back();
  if (!value.empty() && value.front() == '"') value.erase(0, 1);
  return value.find("No Such") == std::string::npos ? value : "";
}

std::string snmp_config(const std::string& agentx) {
  return "[snmp]\nenabled = true\nagentx = \"" + agentx + "\"\n";
}

TEST(Snmp, MibParsesWithSnmptranslate) {
  // Verifies that snmptranslate loads PROTOBALANCE-MIB (as an operator would, adding
  // config/snmp to the search path) and resolves its objects to the OIDs the sub-agent serves.
  const std::string dir = kSourceDir + "/config/snmp";
  const std::map<std::string, std::string> expected = {
      {"protoBalanceMIB", ".1.3.6.1.4.1.8072.9999.9999.7337"},
      {"pbVersion", ".1.3.6.1.4.1.8072.9999.9999.7337.1.1.1"},
      {"pbUptime", ".1.3.6.1.4.1.8072.9999.9999.7337.1.1.2"},
      {"pbActiveConnections", ".1.3.6.1.4.1.8072.9999.9999.7337.1.1.3"},
      {"pbAffinityEntries", ".1.3.6.1.4.1.8072.9999.9999.7337.1.1.4"},
      {"pbNodeTable", ".1.3.6.1.4.1.8072.9999.9999.7337.1.2"},
      {"pbNodeAddress", ".1.3.6.1.4.1.8072.9999.9999.7337.1.2.1.3"},
      {"pbNodeState", ".1.3.6.1.4.1.8072.9999.9999.7337.1.2.1.4"},
      {"pbNodeUp", ".1.3.6.1.4.1.8072.9999.9999.7337.1.2.1.5"},
      {"pbNodeActive", ".1.3.6.1.4.1.8072.9999.9999.7337.1.2.1.6"},
      {"pbNodeTotal", ".1.3.6.1.4.1.8072.9999.9999.7337.1.2.1.7"},
      {"pbNodeFailures", ".1.3.6.1.4.1.8072.9999.9999.7337.1.2.1.8"},
      {"pbNodeBytesToNode", ".1.3.6.1.4.1.8072.9999.9999.7337.1.2.1.9"},
      {"pbNodeBytesToClient", ".1.3.6.1.4.1.8072.9999.9999.7337.1.2.1.10"},
      {"pbTwinConnected", ".1.3.6.1.4.1.8072.9999.9999.7337.1.3.1"},
      {"pbTwinMessagesSent", ".1.3.6.1.4.1.8072.9999.9999.7337.1.3.2"},
      {"pbTwinMessagesReceived", ".1.3.6.1.4.1.8072.9999.9999.7337.1.3.3"},
      {"pbTwinLookupsHit", ".1.3.6.1.4.1.8072.9999.9999.7337.1.3.4"},
      {"pbTwinLookupsMiss", ".1.3.6.1.4.1.8072.9999.9999.7337.1.3.5"},
      {"pbTwinLookupsTimeout", ".1.3.6.1.4.1.8072.9999.9999.7337.1.3.6"},
      {"pbTwinsHeard", ".1.3.6.1.4.1.8072.9999.9999.7337.1.3.7"}};
  for (const auto& [name, oid] : expected) {
    const RunResult r = run({"/usr/bin/env", "MIBS=", "snmptranslate", "-M", "+:" + dir, "-m",
                             "+PROTOBALANCE-MIB", "-PW", "-On", "PROTOBALANCE-MIB::" + name});
    EXPECT_EQ(r.exit_code, 0) << name << ": " << r.output;
    EXPECT_NE(r.output.find(oid + "\n"), std::string::npos) << name << ": " << r.output;
    // With detailed warnings on, the only remark net-snmp makes about any MIB is that it has no
    // display rule for the row type; anything else about this file is a defect in it.
    std::istringstream lines(r.output);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.find("PROTOBALANCE-MIB") != std::string::npos &&
          line.find("No known translation for type (PbNodeEntry)") == std::string::npos) {
        ADD_FAILURE() << name << ": " << line;
      }
    }
  }
  // The enumerations an operator sees.
  const RunResult state = run({"/usr/bin/env", "MIBS=", "snmptranslate", "-M", dir, "-m",
                               "PROTOBALANCE-MIB", "-Td", "PROTOBALANCE-MIB::pbNodeState"});
  EXPECT_NE(state.output.find("available(1), draining(2), offline(3)"), std::string::npos)
      << state.output;
}

TEST(Snmp, WalkShowsTheNodeTableWithTheRightValues) {
  // Verifies, with snmpd as AgentX master, that snmpwalk shows one row per node with its
  // address, state, up, active, total, failures and bytes each way after a known pattern of
  // connections, and that the scalars answer.
  TempDir snmp_dir;
  SnmpMaster master(snmp_dir.path(), free_udp_port());
  KnownPattern pattern(snmp_config(master.socket()));
  ASSERT_TRUE(
      pattern.balancer->process().wait_for(std::regex("AgentX subagent connected"), in(10s)))
      << pattern.balancer->process().output();
  ASSERT_TRUE(pattern.send_traffic());

  std::map<std::string, std::string> table;
  const auto row = [&](const std::string& column, const std::string& cluster,
                       const std::string& node) {
    const auto it = table.find(column + ".\"" + cluster + "\".\"" + node + "\"");
    return it == table.end() ? std::string("<absent>") : it->second;
  };
  const std::string total = std::to_string(KnownPattern::kWebBytes);
  // Bytes are counted when the sessions end; walk until they are.
  eventually(
      [&] {
        table = walk(master, "PROTOBALANCE-MIB::pbNodeTable");
        return row("pbNodeBytesToClient", "web", "alpha") == total &&
               row("pbNodeFailures", "db", "closer") == "1";
      },
      in(15s));

  EXPECT_EQ(table.size(), 5U * 8U) << "5 nodes x 8 columns";
  EXPECT_EQ(row("pbNodeAddress", "web", "alpha"), pattern.alpha.address());
  EXPECT_EQ(row("pbNodeAddress", "web", "beta"), pattern.refused);
  EXPECT_EQ(row("pbNodeState", "web", "alpha"), "1");  // available
  EXPECT_EQ(row("pbNodeState", "web", "gamma"), "2");  // draining
  EXPECT_EQ(row("pbNodeUp", "web", "alpha"), "1");     // true
  EXPECT_EQ(row("pbNodeUp", "web", "beta"), "2");      // false
  EXPECT_EQ(row("pbNodeActive", "web", "alpha"), "0");
  EXPECT_EQ(row("pbNodeTotal", "web", "alpha"), "5");
  EXPECT_EQ(row("pbNodeTotal", "web", "beta"), "0");
  EXPECT_EQ(row("pbNodeFailures", "web", "alpha"), "0");
  EXPECT_EQ(row("pbNodeFailures", "web", "beta"), "1");
  EXPECT_EQ(row("pbNodeBytesToNode", "web", "alpha"), total);
  EXPECT_EQ(row("pbNodeBytesToClient", "web", "alpha"), total);
  EXPECT_EQ(row("pbNodeBytesToNode", "web", "gamma"), "0");
  EXPECT_EQ(row("pbNodeFailures", "db", "hole"), "1");
  EXPECT_EQ(row("pbNodeFailures", "db", "closer"), "1");
  EXPECT_EQ(row("pbNodeTotal", "db", "closer"), "1");
  EXPECT_EQ(row("pbNodeUp", "db", "hole"), "2");

  const auto scalars = walk(master, "PROTOBALANCE-MIB::pbScalars");
  EXPECT_EQ(scalars.count("pbVersion.0"), 1U);
  EXPECT_FALSE(scalars.count("pbVersion.0") == 0 || scalars.at("pbVersion.0").empty());
  EXPECT_EQ(scalars.count("pbUptime.0"), 1U);
  EXPECT_EQ(scalars.count("pbActiveConnections.0") ? scalars.at("pbActiveConnections.0") : "", "0");
  // No cluster of this configuration has affinity on: the map is empty.
  EXPECT_EQ(scalars.count("pbAffinityEntries.0") ? scalars.at("pbAffinityEntries.0") : "", "0");
  // Without [twin] the pbTwin group is absent, and a walk of the whole module still ends.
  EXPECT_TRUE(walk(master, "PROTOBALANCE-MIB::pbTwin").empty());
  EXPECT_EQ(walk(master, "PROTOBALANCE-MIB::protoBalanceMIB").size(), table.size() + 4U);
}

TEST(Snmp, TwinGroupReportsTheLinkToRedis) {
  // Verifies, with a real redis-server and snmpd, that the pbTwin group of a balancer with
  // [twin] says whether the link is up and counts what it sent and looked up: one first-seen
  // client makes a lookup that misses and a published affinity entry; with Redis gone the link
  // reads false(2).
  RedisServer redis;
  ASSERT_TRUE(redis.ready());
  TempDir snmp_dir;
  SnmpMaster master(snmp_dir.path(), free_udp_port());
  Backend alpha("alpha");
  TempDir dir;
  const auto file = dir.write("pb.toml", snmp_config(master.socket()) + R"(
[service]
threads = 1
state_dir = "var"
[[listener]]
name = "web"
listen = "127.0.0.1:0"
cluster = "web"
[[cluster]]
name = "web"
[cluster.affinity]
enabled = true
[[cluster.node]]
name = "alpha"
address = ")" + alpha.address() + R"("
[twin]
redis = ")" + redis.address() + R"("
instance = "A"
lookup_timeout = "2s"
)");
  Balancer balancer({"--config", file.string()});
  ASSERT_TRUE(balancer.process().wait_for(std::regex("AgentX subagent connected"), in(10s)))
      << balancer.process().output();

  std::map<std::string, std::string> twin;
  const auto value = [&](const std::string& object) {
    const auto it = twin.find(object + ".0");
    return it == twin.end() ? std::string("<absent>") : it->second;
  };
  ASSERT_TRUE(eventually(
      [&] {
        twin = walk(master, "PROTOBALANCE-MIB::pbTwin");
        return value("pbTwinConnected") == "1";
      },
      in(20s)))
      << balancer.process().output();
  EXPECT_EQ(twin.size(), 7U);
  EXPECT_EQ(value("pbTwinLookupsMiss"), "0");

  EXPECT_TRUE(echo_round_trip(balancer.address("web"), 5000, 1));
  EXPECT_TRUE(eventually(
      [&] {
        twin = walk(master, "PROTOBALANCE-MIB::pbTwin");
        return value("pbTwinLookupsMiss") == "1" && value("pbTwinMessagesSent") != "0" &&
               value("pbTwinMessagesSent") != "<absent>";
      },
      in(15s)))
      << "lookups miss " << value("pbTwinLookupsMiss") << ", sent " << value("pbTwinMessagesSent");
  EXPECT_EQ(value("pbTwinLookupsHit"), "0");
  EXPECT_EQ(value("pbTwinLookupsTimeout"), "0");
  EXPECT_EQ(value("pbTwinMessagesReceived"), "0");
  EXPECT_EQ(value("pbTwinsHeard"), "0");

  redis.kill();
  EXPECT_TRUE(eventually(
      [&] {
        twin = walk(master, "PROTOBALANCE-MIB::pbTwin");
        return value("pbTwinConnected") == "2";
      },
      in(20s)))
      << "connected " << value("pbTwinConnected");
}

TEST(Snmp, ForwardsWithoutAMasterAndConnectsWhenItComesAndAfterItRestarts) {
  // Verifies that without a master agent the balancer forwards normally and warns once, that
  // the sub-agent registers when the master starts later, and again after the master restarts.
  TempDir snmp_dir;
  const std::uint16_t udp_port = free_udp_port();
  Backend alpha("alpha");
  TempDir dir;
  const auto file = dir.write("pb.toml",
                              snmp_config((snmp_dir.path() / "agentx.sock").string()) + R"(
[service]
threads = 1
state_dir = "var"
[[listener]]
name = "web"
listen = "127.0.0.1:0"
cluster = "web"
[[cluster]]
name = "web"
[[cluster.node]]
name = "alpha"
address = ")" + alpha.address() + "\"\n");
  Balancer balancer({"--config", file.string()});
  ASSERT_TRUE(
      balancer.process().wait_for(std::regex("Failed to connect to the agentx master"), in(10s)))
      << balancer.process().output();
  EXPECT_TRUE(echo_round_trip(balancer.address("web"), 5000, 1));

  SnmpMaster master(snmp_dir.path(), udp_port);  // the master comes later
  const auto ping = std::chrono::seconds(5);     // the sub-agent's retry interval
  EXPECT_TRUE(eventually([&] { return !snmp_version(master).empty(); }, in(3 * ping)))
      << balancer.process().output();
  EXPECT_TRUE(echo_round_trip(balancer.address("web"), 5000, 2));

  master.stop();  // the master restarts
  EXPECT_TRUE(echo_round_trip(balancer.address("web"), 5000, 3));
  master.start();
  EXPECT_TRUE(eventually([&] { return !snmp_version(master).empty(); }, in(3 * ping)))
      << balancer.process().output();
  EXPECT_TRUE(echo_round_trip(balancer.address("web"), 5000, 4));

  // The retries while the master was first away (before it connected) are not repeated as
  // warnings.
  const std::string all = balancer.process().output();
  const std::string output = all.substr(0, all.find("AgentX subagent connected"));
  std::size_t warnings = 0;
  for (std::size_t at = output.find("Failed to connect to the agentx master");
       at != std::string::npos;
       at = output.find("Failed to connect to the agentx master", at + 1)) {
    ++warnings;
  }
  EXPECT_EQ(warnings, 1U) << all;
}

}  // namespace
}  // namespace pb::test
