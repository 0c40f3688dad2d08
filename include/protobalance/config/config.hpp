#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/ip/tcp.hpp>

#include "protobalance/config/network.hpp"
#include "protobalance/config/proxy_protocol.hpp"

namespace pb::config {

using Duration = std::chrono::milliseconds;
using Endpoint = boost::asio::ip::tcp::endpoint;

// Where a value stood in the configuration file (1-based; 0 when it came from defaults or the CLI).
struct SourcePos {
  std::uint32_t line = 0;
  std::uint32_t column = 0;
};

// An operator-set node state. The order is the contract's: green, yellow, red.
enum class AdminState : std::uint8_t { available, draining, offline };

std::string_view to_string(AdminState state);
// Accepts available|draining|offline and the colour words green|yellow|red.
std::optional<AdminState> parse_admin_state(std::string_view text);

struct NodeConfig {
  std::string name;
  std::string address;  // as written, for messages and status
  Endpoint endpoint;    // resolved when the file was loaded
  double load_factor = 1.0;
  std::uint32_t max_connections = 0;  // 0 = unlimited
  std::string fallover;               // name of another node of the cluster; empty = none
  std::uint32_t tier = 1;
  AdminState state = AdminState::available;  // initial state
  ProxyProtocol proxy_protocol = ProxyProtocol::off;  // the cluster's unless set
  SourcePos pos;                             // of the [[cluster.node]] table
  SourcePos fallover_pos;
  SourcePos tier_pos;
};

struct AffinityConfig {
  bool enabled = false;
  Duration ttl = std::chrono::hours(24 * 30);
  std::uint8_t prefix_v4 = 32;
  std::uint8_t prefix_v6 = 64;
};

// [cluster.health]: active checks of every node (see docs/operations.md, "Node health").
struct HealthConfig {
  Duration interval = std::chrono::seconds(2);
  std::optional<Duration> timeout;  // unset = the cluster's connect_timeout
  std::uint32_t rise = 2;           // consecutive successes to come back
  std::uint32_t fall = 3;           // consecutive failures to go down
  std::string send;                 // bytes sent after connecting (send or send_hex)
  std::string expect;               // bytes the reply must contain (expect or expect_hex)
  std::uint16_t port = 0;           // 0 = the node's own port
  SourcePos pos;                    // of the [cluster.health] table
};

// [cluster.agent]: an agent on each node's host reports the node's state and load.
struct AgentConfig {
  std::uint16_t port = 0;  // required
  Duration interval = std::chrono::seconds(5);
  Duration timeout = std::chrono::seconds(1);
  SourcePos pos;  // of the [cluster.agent] table
};

struct ClusterConfig {
  std::string name;
  std::string algorithm = "round_robin";
  Duration connect_timeout = std::chrono::seconds(3);
  Duration retry_interval = std::chrono::seconds(10);
  Duration idle_timeout = std::chrono::hours(1);  // 0 = never
  std::string load_rating = "connections / load_factor";
  std::optional<std::array<std::uint8_t, 16>> hash_key;
  AffinityConfig affinity;
  std::optional<HealthConfig> health;  // no table = plain retry probes
  std::optional<AgentConfig> agent;
  Duration slow_start{0};  // 0 = a node back in service takes its full share at once
  ProxyProtocol proxy_protocol = ProxyProtocol::off;  // the nodes' default
  // A node's end of stream is passed on to the client, who may go on sending (TCP half-close);
  // false: it closes the client's connection too, once the node's last bytes are delivered.
  bool half_close = true;
  std::vector<NodeConfig> nodes;
  SourcePos pos;  // of the [[cluster]] table
  SourcePos algorithm_pos;
  SourcePos load_rating_pos;
  SourcePos hash_key_pos;

  const NodeConfig* find_node(std::string_view node_name) const;
};

// A string from the file with where it stood, for values whose meaning is checked after loading
// (by the area that understands them: address blocks, rates, expressions, server names).
struct PlacedText {
  std::string text;
  SourcePos pos;
};

// [listener.validate]: the first bytes a client sends must match `expect` (see
// protobalance/net/first_bytes_validator.hpp) within `timeout`, looking at most at `max_bytes`.
struct ValidateConfig {
  Duration timeout = std::chrono::seconds(5);
  std::uint32_t max_bytes = 1024;
  PlacedText expect;  // required
  SourcePos pos;      // of the [listener.validate] table
};

// [[listener.route]]: a ClientHello whose server name matches one of `sni` goes to `cluster`.
struct SniRouteConfig {
  std::vector<PlacedText> sni;  // "name", "*.suffix" or "*"
  std::string cluster;
  SourcePos pos;  // of the [[listener.route]] table
};

struct ListenerConfig {
  std::string name;
  std::string address;
  Endpoint endpoint;
  std::string cluster;
  // PROXY protocol in: every connection (from a trusted source) starts with a header naming
  // the client; one from any other source is refused. Empty trusted_proxies = any source.
  bool accept_proxy = false;
  std::vector<Network> trusted_proxies;
  Duration proxy_timeout = std::chrono::seconds(3);
  // Guards, checked after the PROXY header (on the client it names). allow/deny: address
  // blocks as written (checked by pb::net::validate_guards); empty allow = every source.
  std::vector<PlacedText> allow;
  std::vector<PlacedText> deny;
  std::uint32_t max_client_connections = 0;  // per client address (IPv6: per /64); 0 = no limit
  PlacedText max_client_rate;                // "N/PERIOD"; empty = no limit
  std::optional<ValidateConfig> validate;
  std::vector<SniRouteConfig> routes;  // in order: the first matching route wins
  SourcePos pos;

  // True when the listener has an address, limit, validation or SNI guard.
  bool guarded() const {
    return !allow.empty() || !deny.empty() || max_client_connections != 0 ||
           !max_client_rate.text.empty() || validate.has_value() || !routes.empty();
  }
};

struct ServiceConfig {
  unsigned threads = 0;  // 0 = one per CPU
  std::filesystem::path state_dir = "var";  // absolute after loading
  Duration shutdown_timeout = std::chrono::seconds(30);
  std::string log_level = "info";
};

// [admin]: the admin API's Unix socket, through which pbadmin changes the running daemon.
struct AdminConfig {
  // Relative to state_dir (absolute after loading), like every file the daemon writes.
  std::filesystem::path socket = "admin.sock";
  SourcePos socket_pos;  // of the value; 0:0 when the default is used
};

// [metrics]: the Prometheus exporter. No exporter when `listen` is empty (the default), so that
// several balancers on one host never fight over a default port.
struct MetricsConfig {
  std::string listen;  // as written, e.g. "127.0.0.1:9187"; empty = no exporter
  Endpoint endpoint;   // resolved when the file was loaded (port 0 = any free port)
};

// [snmp]: the AgentX sub-agent.
struct SnmpConfig {
  bool enabled = false;
  // The master agent's AgentX socket in net-snmp's transport syntax. The file may say PATH,
  // "unix:PATH" or "tcp:HOST:PORT"; after loading it is an absolute Unix socket path,
  // "tcp:IPv4:PORT" or "tcp6:[IPv6]:PORT".
  std::string agentx = "/var/agentx/master";
};

// [access_log]: one line per finished connection, written by a background thread.
struct AccessLogConfig {
  bool enabled = false;
  // Relative to state_dir (absolute after loading), like every file the daemon writes;
  // "-" = standard output.
  std::filesystem::path path = "access.log";
};

// [twin]: the link to a Redis server shared by twin balancers (see protobalance/state/twin_link.hpp).
// Being wired in: the daemon does not use it yet. Validated without connecting.
struct TwinConfig {
  bool enabled = false;      // true when the file has a [twin] table
  std::string redis = "127.0.0.1:6379";  // as written, for messages and status
  std::string host = "127.0.0.1";        // host name or address (IPv6 without brackets)
  std::uint16_t port = 6379;
  std::filesystem::path unix_socket;     // set (absolute) for "unix:/path"; then host is empty
  std::filesystem::path password_file;   // absolute; empty = no AUTH
  std::int64_t database = 0;
  std::string key_prefix = "protobalance:";
  std::string instance;                  // after loading: the host name when not set
  Duration lookup_timeout = std::chrono::milliseconds(50);
  SourcePos pos;  // of the [twin] table
};

// The whole, validated configuration. Immutable once loaded; shared as shared_ptr<const Config>.
struct Config {
  std::filesystem::path file;  // empty in quick mode
  ServiceConfig service;
  AdminConfig admin;
  MetricsConfig metrics;
  SnmpConfig snmp;
  AccessLogConfig access_log;
  TwinConfig twin;
  std::vector<ListenerConfig> listeners;
  std::vector<ClusterConfig> clusters;

  const ClusterConfig* find_cluster(std::string_view cluster_name) const;
};

// One problem found in a configuration, printed as FILE:LINE:COL: message.
struct Diagnostic {
  std::string file;
  SourcePos pos;
  std::string message;

  std::string to_string() const;
};

struct LoadResult {
  std::shared_ptr<const Config> config;  // null when errors is not empty
  std::vector<Diagnostic> errors;
};

// Parses and validates a TOML configuration file. Every problem is reported, not only the first.
// Relative paths in the file are taken relative to the file's folder.
LoadResult load_file(const std::filesystem::path& file);

// Where the admin socket of the configuration in `file` is, from [service] state_dir and [admin]
// socket alone: pbadmin reaches a running balancer also while other parts of the file are being
// edited and have errors (`pbadmin reload` then shows them as the balancer found them). Returns
// nullopt, with the diagnostics in `errors`, when the file cannot be read or parsed as TOML or
// one of those two keys is wrong.
std::optional<std::filesystem::path> find_admin_socket(const std::filesystem::path& file,
                                                       std::vector<Diagnostic>& errors);

// Same, for text already in memory. `source_name` is used in diagnostics, `base_dir` for paths.
LoadResult load_string(std::string_view text, const std::string& source_name,
                       const std::filesystem::path& base_dir);

// The configuration of quick mode (--listen/--node on the command line, no file): one listener
// "default" forwarding to one cluster "default" whose nodes are named "node1".."nodeN" in the
// order given, every other setting at its default, state_dir "var" under the current directory.
// `listen_text` and `node_texts` are the addresses as the operator typed them (for status and
// messages); a missing text falls back to the endpoint's own spelling.
std::shared_ptr<const Config> make_quick_config(const Endpoint& listen,
                                                const std::vector<Endpoint>& nodes,
                                                std::string algorithm,
                                                const std::string& listen_text,
                                                const std::vector<std::string>& node_texts);

// Same, with the nodes already built (quick mode's balance syntax sets their max_connections,
// load_factor and tier; names are given by the caller) and the cluster's hash key.
std::shared_ptr<const Config> make_quick_config(
    const Endpoint& listen, std::vector<NodeConfig> nodes, std::string algorithm,
    const std::string& listen_text, std::optional<std::array<std::uint8_t, 16>> hash_key);

// Reads a Redis password file: its content without one trailing newline ("\n" or "\r\n").
// Returns nullopt, with the reason in `error`, when the file cannot be read or the password is
// empty or holds a line break. Used by --check and by the twin link at each connection.
std::optional<std::string> read_password_file(const std::filesystem::path& file,
                                              std::string& error);

}  // namespace pb::config
