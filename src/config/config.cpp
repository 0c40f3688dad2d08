#include "protobalance/config/config.hpp"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <fstream>
#include <iterator>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <map>
#include <span>
#include <system_error>
#include <utility>

#include "protobalance/config/address.hpp"
#include "protobalance/config/duration.hpp"

namespace pb::config {

std::string_view to_string(AdminState state) {
  switch (state) {
    case AdminState::available:
      return "available";
    case AdminState::draining:
      return "draining";
    case AdminState::offline:
      return "offline";
  }
  return "unknown";
}

std::optional<AdminState> parse_admin_state(std::string_view text) {
  if (text == "available" || text == "green") {
    return AdminState::available;
  }
  if (text == "draining" || text == "yellow") {
    return AdminState::draining;
  }
  if (text == "offline" || text == "red") {
    return AdminState::offline;
  }
  return std::nullopt;
}

std::string_view to_string(ProxyProtocol p) {
  switch (p) {
    case ProxyProtocol::off: return "off";
    case ProxyProtocol::v1: return "v1";
    case ProxyProtocol::v2: return "v2";
  }
  return "unknown";
}

std::optional<ProxyProtocol> parse_proxy_protocol(std::string_view text) {
  if (text == "off") return ProxyProtocol::off;
  if (text == "v1") return ProxyProtocol::v1;
  if (text == "v2") return ProxyProtocol::v2;
  return std::nullopt;
}

const NodeConfig* ClusterConfig::find_node(std::string_view node_name) const {
  const auto it = std::find_if(nodes.begin(), nodes.end(),
                               [&](const NodeConfig& n) { return n.name == node_name; });
  return it == nodes.end() ? nullptr : &*it;
}

const ClusterConfig* Config::find_cluster(std::string_view cluster_name) const {
  const auto it = std::find_if(clusters.begin(), clusters.end(),
                               [&](const ClusterConfig& c) { return c.name == cluster_name; });
  return it == clusters.end() ? nullptr : &*it;
}

std::string Diagnostic::to_string() const {
  // A problem with the file as a whole (it cannot be read) has no position; print it the way
  // compilers do, "FILE: message", rather than invent a line 0.
  if (pos.line == 0) {
    return fmt::format("{}: {}", file, message);
  }
  return fmt::format("{}:{}:{}: {}", file, pos.line, pos.column, message);
}

namespace {

namespace fs = std::filesystem;
using Keys = std::span<const std::string_view>;

constexpr std::array<std::string_view, 8> kTopKeys{"service", "listener",   "cluster", "metrics",
                                                   "access_log", "snmp",     "admin",   "twin"};
constexpr std::array<std::string_view, 4> kServiceKeys{"threads", "state_dir", "shutdown_timeout",
                                                       "log_level"};
constexpr std::array<std::string_view, 12> kListenerKeys{"name", "listen", "cluster",
    "accept_proxy", "trusted_proxies", "proxy_timeout", "allow", "deny", "max_client_connections",
    "max_client_rate", "validate", "route"};
constexpr std::array<std::string_view, 3> kValidateKeys{"timeout", "max_bytes", "expect"};
constexpr std::array<std::string_view, 2> kRouteKeys{"sni", "cluster"};
// The first bytes are peeked into one pooled buffer (net::BufferPool::kBufferSize).
constexpr std::int64_t kMaxValidateBytes = 16 * 1024;
constexpr std::array<std::string_view, 1> kMetricsKeys{"listen"};
constexpr std::array<std::string_view, 1> kAdminKeys{"socket"};
// sockaddr_un::sun_path holds 108 bytes with the terminating NUL.
constexpr std::size_t kMaxSocketPath = 107;
constexpr std::array<std::string_view, 2> kSnmpKeys{"enabled", "agentx"};
constexpr std::array<std::string_view, 2> kAccessLogKeys{"enabled", "path"};
constexpr std::array<std::string_view, 6> kTwinKeys{"redis",      "password_file", "database",
                                                    "key_prefix", "instance",      "lookup_timeout"};
constexpr std::array<std::string_view, 13> kClusterKeys{
    "name",           "algorithm",    "connect_timeout",
    "retry_interval", "idle_timeout", "load_rating",
    "hash_key",       "affinity",     "node",
    "health",         "agent",        "slow_start",
    "proxy_protocol"};
constexpr std::array<std::string_view, 9> kHealthKeys{"interval", "timeout",  "rise",
                                                      "fall",     "send",     "expect",
                                                      "send_hex", "expect_hex", "port"};
constexpr std::array<std::string_view, 3> kAgentKeys{"port", "interval", "timeout"};
constexpr std::array<std::string_view, 4> kAffinityKeys{"enabled", "ttl", "prefix_v4", "prefix_v6"};
constexpr std::array<std::string_view, 8> kNodeKeys{
    "name", "address", "load_factor", "max_connections", "fallover", "tier", "state",
    "proxy_protocol"};
constexpr std::array<std::string_view, 7> kLogLevels{"trace", "debug",    "info", "warn",
                                                     "error", "critical", "off"};

constexpr std::int64_t kMaxU32 = std::numeric_limits<std::uint32_t>::max();
constexpr double kMaxLoadFactor = 1e6;

SourcePos to_pos(const toml::source_region& region) {
  return {region.begin.line, region.begin.column};
}

std::string join(Keys words) {
  std::string out;
  for (const std::string_view w : words) {
    if (!out.empty()) {
      out += ", ";
    }
    out += w;
  }
  return out;
}

// How a TOML type is called in messages, in the words of the TOML specification.
std::string_view type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table:
      return "table";
    case toml::node_type::array:
      return "array";
    case toml::node_type::string:
      return "string";
    case toml::node_type::integer:
      return "integer";
    case toml::node_type::floating_point:
      return "float";
    case toml::node_type::boolean:
      return "boolean";
    case toml::node_type::date:
      return "local date";
    case toml::node_type::time:
      return "local time";
    case toml::node_type::date_time:
      return "date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

// Names end up in metrics labels, log lines, SQLite keys and pbadmin arguments, so they are kept
// to characters that need no quoting anywhere.
bool is_valid_name(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

// Reads one TOML document into a Config. Every reader reports what it finds wrong and carries on,
// so that one run shows the operator all problems; the Config is handed out only when none was
// found. Positions come from toml++ (1-based line and column of the key or value concerned).
class Loader {
 public:
  Loader(std::string source_name, const fs::path& base_dir) : source_name_(std::move(source_name)) {
    std::error_code ec;
    base_dir_ = base_dir.empty() ? fs::current_path(ec) : fs::absolute(base_dir, ec);
    if (ec) {
      base_dir_ = base_dir;
    }
  }

  LoadResult run(std::string_view text, fs::path file) {
    config_.file = std::move(file);
#if TOML_EXCEPTIONS
    toml::table root;
    try {
      root = toml::parse(text, std::string_view{source_name_});
    } catch (const toml::parse_error& e) {
      error(to_pos(e.source()), std::string(e.description()));
      return finish();
    }
#else
    toml::parse_result parsed = toml::parse(text, std::string_view{source_name_});
    if (!parsed) {
      error(to_pos(parsed.error().source()), std::string(parsed.error().description()));
      return finish();
    }
    toml::table root = std::move(parsed).table();
#endif
    read_root(root);
    return finish();
  }

  // From now on only [service] state_dir and [admin] socket are read (find_admin_socket()).
  void only_admin_socket() { admin_socket_only_ = true; }

  // Reports a problem that concerns the file as a whole (for example, it cannot be read).
  LoadResult fail(std::string message) {
    error(SourcePos{}, std::move(message));
    return finish();
  }

 private:
  void error(SourcePos pos, std::string message) {
    errors_.push_back(Diagnostic{source_name_, pos, std::move(message)});
  }
  void error(const toml::node& node, std::string message) {
    error(to_pos(node.source()), std::move(message));
  }

  void unknown_key(const toml::key& key, std::string_view where, Keys allowed) {
    error(to_pos(key.source()),
          fmt::format("unknown key '{}' in {}; allowed keys: {}", key.str(), where, join(allowed)));
  }

  void missing_key(const toml::table& table, std::string_view where, std::string_view key) {
    error(table, fmt::format("{} is missing required key '{}'", where, key));
  }

  LoadResult finish() {
    LoadResult result;
    if (errors_.empty()) {
      result.config = std::make_shared<const Config>(std::move(config_));
      return result;
    }
    // toml++ tables iterate in key order, not file order; the operator reads the file top down.
    std::stable_sort(errors_.begin(), errors_.end(), [](const Diagnostic& a, const Diagnostic& b) {
      return std::pair(a.pos.line, a.pos.column) < std::pair(b.pos.line, b.pos.column);
    });
    result.errors = std::move(errors_);
    return result;
  }

  // ---- typed readers: each returns nullopt after reporting a wrong type or value ----

  std::optional<std::string> read_string(const toml::node& node, std::string_view key) {
    if (const auto* s = node.as_string()) {
      return s->get();
    }
    error(node, fmt::format("{} must be a string, got {}", key, type_name(node)));
    return std::nullopt;
  }

  std::optional<std::int64_t> read_integer(const toml::node& node, std::string_view key,
                                           std::int64_t min, std::int64_t max) {
    const auto* i = node.as_integer();
    if (i == nullptr) {
      error(node, fmt::format("{} must be an integer, got {}", key, type_name(node)));
      return std::nullopt;
    }
    const std::int64_t value = i->get();
    if (value < min || value > max) {
      error(node, fmt::format("{} must be from {} to {}, got {}", key, min, max, value));
      return std::nullopt;
    }
    return value;
  }

  std::optional<bool> read_bool(const toml::node& node, std::string_view key) {
    if (const auto* b = node.as_boolean()) {
      return b->get();
    }
    error(node, fmt::format("{} must be a boolean (true or false), got {}", key, type_name(node)));
    return std::nullopt;
  }

  std::optional<Duration> read_duration(const toml::node& node, std::string_view key,
                                        bool positive) {
    const auto* s = node.as_string();
    if (s == nullptr) {
      error(node, fmt::format("{} must be a duration string such as \"3s\", got {}", key,
                              type_name(node)));
      return std::nullopt;
    }
    const std::optional<Duration> d = parse_duration(s->get());
    if (!d) {
      error(node,
            fmt::format("{} has an invalid duration '{}'; expected a whole number and one unit "
                        "(ms, s, m, h, d), e.g. \"250ms\", \"3s\", \"1h\"",
                        key, s->get()));
      return std::nullopt;
    }
    if (positive && d->count() == 0) {
      error(node, fmt::format("{} must be greater than 0s", key));
      return std::nullopt;
    }
    return d;
  }

  // A name with bad characters is reported but still returned, so that references to it (a
  // listener's `cluster`) do not produce a second, misleading "not defined" error.
  std::optional<std::string> read_name(const toml::node& node) {
    std::optional<std::string> name = read_string(node, "name");
    if (name && !is_valid_name(*name)) {
      error(node,
            fmt::format(
                "name must be non-empty and use only letters, digits, '_', '.' and '-', got '{}'",
                *name));
    }
    return name;
  }

  std::optional<Endpoint> read_endpoint(const toml::node& node, std::string_view key,
                                        bool allow_port_zero) {
    const std::optional<std::string> text = read_string(node, key);
    if (!text) {
      return std::nullopt;
    }
    auto parsed = parse_endpoint(*text, allow_port_zero);
    if (const auto* message = std::get_if<std::string>(&parsed)) {
      error(node, fmt::format("{}: {}", key, *message));
      return std::nullopt;
    }
    return std::get<Endpoint>(parsed);
  }

  // `[[key]]` sections: an array whose elements are tables. Reports a plain `[key]` table or any
  // other type, and each element that is not a table; returns the tables that are.
  std::vector<const toml::table*> read_table_array(const toml::node& node, std::string_view key,
                                                   std::string_view header) {
    std::vector<const toml::table*> tables;
    const auto* array = node.as_array();
    if (array == nullptr) {
      error(node, fmt::format("{} must be an array of tables, written {}, got {}", key, header,
                              type_name(node)));
      return tables;
    }
    for (const toml::node& element : *array) {
      if (const auto* t = element.as_table()) {
        tables.push_back(t);
      } else {
        error(element,
              fmt::format("each {} entry must be a table, got {}", key, type_name(element)));
      }
    }
    return tables;
  }

  // ---- sections ----

  void read_root(const toml::table& root) {
    const toml::node* listeners = nullptr;
    for (auto&& [key, value] : root) {
      const std::string_view k = key.str();
      if (admin_socket_only_ && k != "service" && k != "admin") {
        continue;
      }
      if (k == "service") {
        if (const auto* t = value.as_table()) {
          read_service(*t);
        } else {
          error(value, fmt::format("service must be a table, written [service], got {}",
                                   type_name(value)));
        }
      } else if (k == "metrics" || k == "snmp" || k == "access_log") {
        read_observability_section(k, value);
      } else if (k == "admin") {
        if (const auto* t = value.as_table()) {
          read_admin(*t);
        } else {
          error(value,
                fmt::format("admin must be a table, written [admin], got {}", type_name(value)));
        }
      } else if (k == "twin") {
        read_twin(value);
      } else if (k == "listener") {
        listeners = &value;  // after the clusters, which listeners refer to
      } else if (k == "cluster") {
        for (const toml::table* t : read_table_array(value, "cluster", "[[cluster]]")) {
          read_cluster(*t);
        }
      } else {
        unknown_key(key, "the top level", kTopKeys);
      }
    }
    if (listeners != nullptr) {
      for (const toml::table* t : read_table_array(*listeners, "listener", "[[listener]]")) {
        read_listener(*t);
      }
    }
    resolve_state_dir();
    resolve_access_log_path();
    resolve_admin_socket();
  }

  void read_service(const toml::table& table) {
    ServiceConfig& service = config_.service;
    for (auto&& [key, value] : table) {
      const std::string_view k = key.str();
      if (admin_socket_only_ && k != "state_dir") {
        continue;
      }
      if (k == "threads") {
        if (const auto v = read_integer(value, k, 0, 1024)) {
          service.threads = static_cast<unsigned>(*v);
        }
      } else if (k == "state_dir") {
        if (auto v = read_string(value, k)) {
          if (v->empty()) {
            error(value, "state_dir must not be empty");
          } else {
            service.state_dir = std::move(*v);
          }
        }
      } else if (k == "shutdown_timeout") {
        if (const auto v = read_duration(value, k, false)) {
          service.shutdown_timeout = *v;
        }
      } else if (k == "log_level") {
        if (auto v = read_string(value, k)) {
          if (std::find(kLogLevels.begin(), kLogLevels.end(), *v) == kLogLevels.end()) {
            error(value,
                  fmt::format("log_level must be one of {}, got '{}'", join(kLogLevels), *v));
          } else {
            service.log_level = std::move(*v);
          }
        }
      } else {
        unknown_key(key, "[service]", kServiceKeys);
      }
    }
  }

  // Relative to the configuration file's folder, so that the daemon and pbadmin, started from
  // different directories, agree on where the database and the socket are.
  void resolve_state_dir() {
    fs::path& dir = config_.service.state_dir;
    if (dir.is_relative()) {
      dir = base_dir_ / dir;
    }
    dir = dir.lexically_normal();
  }

  void read_admin(const toml::table& table) {
    for (auto&& [key, value] : table) {
      if (key.str() != "socket") {
        unknown_key(key, "[admin]", kAdminKeys);
        continue;
      }
      if (auto v = read_string(value, "socket")) {
        if (v->empty()) {
          error(value, "socket must not be empty; expected a path such as \"admin.sock\"");
        } else {
          config_.admin.socket = std::move(*v);
          config_.admin.socket_pos = to_pos(value.source());
        }
      }
    }
  }

  // Relative to state_dir, next to the database. The kernel refuses longer Unix socket paths
  // at bind time; here the operator learns it from --check, with the position when the path
  // was written in the file.
  void resolve_admin_socket() {
    fs::path& socket = config_.admin.socket;
    if (socket.is_relative()) {
      socket = config_.service.state_dir / socket;
    }
    socket = socket.lexically_normal();
    const std::size_t length = socket.native().size();
    if (length > kMaxSocketPath) {
      error(config_.admin.socket_pos,
            fmt::format("the admin socket path {} is {} bytes long; a Unix socket path can have "
                        "at most {}: set a shorter [admin] socket (or state_dir)",
                        socket.string(), length, kMaxSocketPath));
    }
  }

  // [metrics], [snmp] and [access_log]: plain tables of a few keys each.
  void read_observability_section(std::string_view section, const toml::node& value) {
    const auto* table = value.as_table();
    if (table == nullptr) {
      error(value, fmt::format("{} must be a table, written [{}], got {}", section, section,
                               type_name(value)));
    } else if (section == "metrics") {
      read_metrics(*table);
    } else if (section == "snmp") {
      read_snmp(*table);
    } else {
      read_access_log(*table);
    }
  }

  void read_metrics(const toml::table& table) {
    for (auto&& [key, value] : table) {
      if (key.str() != "listen") {
        unknown_key(key, "[metrics]", kMetricsKeys);
        continue;
      }
      const auto* s = value.as_string();
      if (s != nullptr && s->get().empty()) {
        continue;  // "" = no exporter, as when the key is absent
      }
      if (const auto ep = read_endpoint(value, "listen", true)) {
        config_.metrics.listen = value.value_or(std::string{});
        config_.metrics.endpoint = *ep;
      }
    }
  }

  void read_snmp(const toml::table& table) {
    for (auto&& [key, value] : table) {
      const std::string_view k = key.str();
      if (k == "enabled") {
        if (const auto v = read_bool(value, k)) {
          config_.snmp.enabled = *v;
        }
      } else if (k == "agentx") {
        if (const auto v = read_string(value, k)) {
          read_agentx(value, *v);
        }
      } else {
        unknown_key(key, "[snmp]", kSnmpKeys);
      }
    }
  }

  // The master agent's socket, in net-snmp's transport syntax: a Unix socket path ("unix:" is
  // optional; relative to the configuration file's folder) or "tcp:HOST:PORT". A TCP address is
  // resolved here, so that a typo is a configuration error rather than a silent retry loop.
  void read_agentx(const toml::node& node, std::string_view text) {
    constexpr std::string_view kExpected =
        "expected a Unix socket path such as \"/var/agentx/master\", \"unix:PATH\" or "
        "\"tcp:HOST:PORT\"";
    const std::size_t colon = text.find(':');
    const std::string_view scheme = colon == std::string_view::npos ? "" : text.substr(0, colon);
    const bool has_scheme =
        !scheme.empty() && std::all_of(scheme.begin(), scheme.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        });
    if (has_scheme && scheme == "tcp") {
      auto parsed = parse_endpoint(text.substr(colon + 1), false);
      if (const auto* message = std::get_if<std::string>(&parsed)) {
        error(node, fmt::format("agentx: {}", *message));
        return;
      }
      const Endpoint& ep = std::get<Endpoint>(parsed);
      // net-snmp's "tcp" transport is IPv4 only; IPv6 is its "tcp6" transport.
      config_.snmp.agentx = ep.address().is_v6()
                                ? fmt::format("tcp6:[{}]:{}", ep.address().to_string(), ep.port())
                                : fmt::format("tcp:{}:{}", ep.address().to_string(), ep.port());
      return;
    }
    if (has_scheme && scheme != "unix") {
      error(node, fmt::format("agentx has an unsupported transport '{}:'; {}", scheme, kExpected));
      return;
    }
    const fs::path path{std::string(has_scheme ? text.substr(colon + 1) : text)};
    if (path.empty()) {
      error(node, fmt::format("agentx must not be empty; {}", kExpected));
      return;
    }
    config_.snmp.agentx =
        (path.is_relative() ? base_dir_ / path : path).lexically_normal().string();
  }

  void read_access_log(const toml::table& table) {
    for (auto&& [key, value] : table) {
      const std::string_view k = key.str();
      if (k == "enabled") {
        if (const auto v = read_bool(value, k)) {
          config_.access_log.enabled = *v;
        }
      } else if (k == "path") {
        if (auto v = read_string(value, k)) {
          if (v->empty()) {
            error(value, "path must not be empty; use \"-\" for standard output");
          } else {
            config_.access_log.path = std::move(*v);
          }
        }
      } else {
        unknown_key(key, "[access_log]", kAccessLogKeys);
      }
    }
  }

  // Relative to state_dir: the log is written by the daemon, next to its other files, so the
  // configuration's folder may stay read-only.
  void resolve_access_log_path() {
    fs::path& path = config_.access_log.path;
    if (path != "-" && path.is_relative()) {
      path = (config_.service.state_dir / path).lexically_normal();
    }
  }

  // [twin]: syntax and files only; nothing connects to Redis here (--check stays offline).
  void read_twin(const toml::node& node) {
    const auto* table = node.as_table();
    if (table == nullptr) {
      error(node, fmt::format("twin must be a table, written [twin], got {}", type_name(node)));
      return;
    }
    TwinConfig& twin = config_.twin;
    twin.enabled = true;
    twin.pos = to_pos(table->source());
    for (auto&& [key, value] : *table) {
      const std::string_view k = key.str();
      if (k == "redis") {
        if (auto v = read_string(value, k)) {
          std::string message;
          if (!parse_redis_address(*v, twin, message)) {
            error(value, fmt::format("redis: {}", message));
          }
        }
      } else if (k == "password_file") {
        if (auto v = read_string(value, k); v && !v->empty()) {
          const fs::path path = (fs::path(*v).is_relative() ? base_dir_ / *v : fs::path(*v))
                                    .lexically_normal();
          std::string message;
          if (read_password_file(path, message)) {
            twin.password_file = path;
          } else {
            error(value, fmt::format("password_file: {}", message));
          }
        }
      } else if (k == "database") {
        if (const auto v = read_integer(value, k, 0, std::numeric_limits<std::int32_t>::max())) {
          twin.database = *v;
        }
      } else if (k == "key_prefix") {
        if (auto v = read_string(value, k)) {
          twin.key_prefix = std::move(*v);
        }
      } else if (k == "instance") {
        if (auto v = read_string(value, k)) {
          if (!v->empty() && !is_valid_name(*v)) {
            error(value, fmt::format("instance must use only letters, digits, '_', '.' and '-', "
                                     "got '{}'",
                                     *v));
          } else {
            twin.instance = std::move(*v);
          }
        }
      } else if (k == "lookup_timeout") {
        if (const auto v = read_duration(value, k, true)) {
          twin.lookup_timeout = *v;
        }
      } else {
        unknown_key(key, "[twin]", kTwinKeys);
      }
    }
    if (twin.instance.empty()) {
      twin.instance = host_name();
    }
  }

  // "host:port", "[v6]:port" or "unix:/path" (relative to the configuration's folder). A host
  // name is kept as written and resolved when connecting, as Redis clients do.
  bool parse_redis_address(std::string_view text, TwinConfig& twin, std::string& message) {
    constexpr std::string_view kExpected =
        "expected \"host:port\", \"[v6]:port\" or \"unix:/path/to/socket\"";
    if (text.starts_with("unix:")) {
      const fs::path path{std::string(text.substr(5))};
      if (path.empty()) {
        message = fmt::format("the Unix socket path is empty; {}", kExpected);
        return false;
      }
      twin.redis = std::string(text);
      twin.unix_socket = (path.is_relative() ? base_dir_ / path : path).lexically_normal();
      twin.host.clear();
      twin.port = 0;
      return true;
    }
    std::string_view host;
    std::string_view port_text;
    if (text.starts_with("[")) {
      const std::size_t close = text.find(']');
      if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
        message = fmt::format("'{}' is not a valid address; {}", text, kExpected);
        return false;
      }
      host = text.substr(1, close - 1);
      port_text = text.substr(close + 2);
      boost::system::error_code ec;
      boost::asio::ip::make_address_v6(std::string(host), ec);
      if (ec || host.empty()) {
        message = fmt::format("'{}' is not an IPv6 address; {}", host, kExpected);
        return false;
      }
    } else {
      const std::size_t colon = text.rfind(':');
      if (colon == std::string_view::npos || text.find(':') != colon) {
        message = fmt::format("'{}' is not a valid address; {}", text, kExpected);
        return false;
      }
      host = text.substr(0, colon);
      port_text = text.substr(colon + 1);
      if (host.empty()) {
        message = fmt::format("the host is missing in '{}'; {}", text, kExpected);
        return false;
      }
    }
    unsigned port = 0;
    const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (port_text.empty() || ec != std::errc{} || end != port_text.data() + port_text.size() ||
        port == 0 || port > 65535) {
      message = fmt::format("the port in '{}' must be from 1 to 65535; {}", text, kExpected);
      return false;
    }
    twin.redis = std::string(text);
    twin.host = std::string(host);
    twin.port = static_cast<std::uint16_t>(port);
    twin.unix_socket.clear();
    return true;
  }

  static std::string host_name() {
    std::array<char, 256> buffer{};
    if (::gethostname(buffer.data(), buffer.size() - 1) != 0 || buffer[0] == '\0') {
      return "protobalance";
    }
    return std::string(buffer.data());
  }

  void read_listener(const toml::table& table) {
    ListenerConfig listener;
    listener.pos = to_pos(table.source());
    bool has_name = false;
    bool has_listen = false;
    bool has_cluster = false;
    SourcePos listen_pos;  // stays 0:0 unless `listen` holds a valid endpoint
    for (auto&& [key, value] : table) {
      const std::string_view k = key.str();
      if (k == "name") {
        has_name = true;
        if (auto v = read_name(value)) {
          listener.name = std::move(*v);
          if (const auto [it, inserted] =
                  listener_names_.try_emplace(listener.name, to_pos(value.source()));
              !inserted) {
            error(value, fmt::format("duplicate listener name '{}' (already defined at line {})",
                                     listener.name, it->second.line));
          }
        }
      } else if (k == "listen") {
        has_listen = true;
        if (const auto* s = value.as_string()) {
          listener.address = s->get();
        }
        if (const auto ep = read_endpoint(value, k, true)) {
          listener.endpoint = *ep;
          listen_pos = to_pos(value.source());
        }
      } else if (k == "cluster") {
        has_cluster = true;
        if (auto v = read_string(value, k)) {
          listener.cluster = std::move(*v);
          if (!cluster_names_.contains(listener.cluster)) {
            error(value,
                  fmt::format("cluster '{}' is not defined; defined clusters: {}", listener.cluster,
                              cluster_names_.empty() ? std::string("none") : known_clusters()));
          }
        }
      } else if (k == "accept_proxy") {
        if (const auto v = read_bool(value, k)) listener.accept_proxy = *v;
      } else if (k == "trusted_proxies") {
        read_trusted_proxies(value, listener);
      } else if (k == "proxy_timeout") {
        if (const auto v = read_duration(value, k, true)) listener.proxy_timeout = *v;
      } else if (k == "allow" || k == "deny") {
        (k == "allow" ? listener.allow : listener.deny) = read_placed_strings(value, k);
      } else if (k == "max_client_connections") {
        if (const auto v = read_integer(value, k, 0, 1'000'000)) {
          listener.max_client_connections = static_cast<std::uint32_t>(*v);
        }
      } else if (k == "max_client_rate") {
        if (auto v = read_string(value, k)) {
          listener.max_client_rate = PlacedText{std::move(*v), to_pos(value.source())};
        }
      } else if (k == "validate") {
        if (const auto* t = value.as_table()) {
          listener.validate = read_validate(*t);
        } else {
          error(value, fmt::format("validate must be a table, written [listener.validate], got {}",
                                   type_name(value)));
        }
      } else if (k == "route") {
        for (const toml::table* t : read_table_array(value, "route", "[[listener.route]]")) {
          listener.routes.push_back(read_route(*t));
        }
      } else {
        unknown_key(key, "[[listener]]", kListenerKeys);
      }
    }
    if (!has_name) {
      missing_key(table, "[[listener]]", "name");
    }
    if (!has_listen) {
      missing_key(table, "[[listener]]", "listen");
    }
    if (!has_cluster) {
      missing_key(table, "[[listener]]", "cluster");
    }
    // With SO_REUSEPORT a second listener on the same address would bind without complaint and
    // silently take half of the first one's connections. Port 0 picks a fresh port each time.
    if (listen_pos.line != 0 && listener.endpoint.port() != 0) {
      const auto earlier = std::find_if(
          config_.listeners.begin(), config_.listeners.end(),
          [&](const ListenerConfig& other) { return other.endpoint == listener.endpoint; });
      if (earlier != config_.listeners.end()) {
        error(listen_pos,
              fmt::format("listen address {} is already used by listener '{}' (line {})",
                          format_endpoint(listener.endpoint), earlier->name, earlier->pos.line));
      }
    }
    config_.listeners.push_back(std::move(listener));
  }

  // An array of strings (allow, deny, sni), each kept with its position: what they mean is
  // checked later by the area that understands them, which points at the entry.
  std::vector<PlacedText> read_placed_strings(const toml::node& value, std::string_view key) {
    std::vector<PlacedText> out;
    const auto* array = value.as_array();
    if (array == nullptr) {
      error(value, fmt::format("{} must be an array of strings, got {}", key, type_name(value)));
      return out;
    }
    for (const auto& item : *array) {
      if (const auto* text = item.as_string()) {
        out.push_back(PlacedText{text->get(), to_pos(item.source())});
      } else {
        error(item, fmt::format("{} entries must be strings, got {}", key, type_name(item)));
      }
    }
    return out;
  }

  // [listener.validate]: `expect` is required (a validation without an expression would let
  // everything through); the expression itself is compiled by pb::net::validate_guards.
  ValidateConfig read_validate(const toml::table& table) {
    ValidateConfig validate;
    validate.pos = to_pos(table.source());
    bool has_expect = false;
    for (auto&& [key, value] : table) {
      const std::string_view k = key.str();
      if (k == "timeout") {
        if (const auto v = read_duration(value, k, true)) validate.timeout = *v;
      } else if (k == "max_bytes") {
        if (const auto v = read_integer(value, k, 1, kMaxValidateBytes)) {
          validate.max_bytes = static_cast<std::uint32_t>(*v);
        }
      } else if (k == "expect") {
        has_expect = true;
        if (auto v = read_string(value, k)) {
          validate.expect = PlacedText{std::move(*v), to_pos(value.source())};
        }
      } else {
        unknown_key(key, "[listener.validate]", kValidateKeys);
      }
    }
    if (!has_expect) missing_key(table, "[listener.validate]", "expect");
    return validate;
  }

  // [[listener.route]]: both keys required; the cluster must exist (clusters are read first).
  SniRouteConfig read_route(const toml::table& table) {
    SniRouteConfig route;
    route.pos = to_pos(table.source());
    bool has_sni = false;
    bool has_cluster = false;
    for (auto&& [key, value] : table) {
      const std::string_view k = key.str();
      if (k == "sni") {
        has_sni = true;
        route.sni = read_placed_strings(value, k);
        if (route.sni.empty() && value.as_array() != nullptr) {
          error(value, "sni must name at least one server name, \"*.suffix\" or \"*\"");
        }
      } else if (k == "cluster") {
        has_cluster = true;
        if (auto v = read_string(value, k)) {
          route.cluster = std::move(*v);
          if (!cluster_names_.contains(route.cluster)) {
            error(value,
                  fmt::format("cluster '{}' is not defined; defined clusters: {}", route.cluster,
                              cluster_names_.empty() ? std::string("none") : known_clusters()));
          }
        }
      } else {
        unknown_key(key, "[[listener.route]]", kRouteKeys);
      }
    }
    if (!has_sni) missing_key(table, "[[listener.route]]", "sni");
    if (!has_cluster) missing_key(table, "[[listener.route]]", "cluster");
    return route;
  }

  // trusted_proxies = ["10.0.0.0/8", "2001:db8::/32", "192.0.2.7"]: address blocks (a bare
  // address is a block of one).
  void read_trusted_proxies(const toml::node& value, ListenerConfig& listener) {
    const auto* array = value.as_array();
    if (array == nullptr) {
      error(value, fmt::format("trusted_proxies must be an array of address blocks like "
                               "\"10.0.0.0/8\", got {}", type_name(value)));
      return;
    }
    for (const auto& item : *array) {
      const auto* text = item.as_string();
      if (text == nullptr) {
        error(item, fmt::format("trusted_proxies entries must be strings like \"10.0.0.0/8\", got {}",
                                type_name(item)));
        continue;
      }
      if (auto parsed = parse_network(text->get()); parsed.network) {
        listener.trusted_proxies.push_back(*parsed.network);
      } else {
        error(item, fmt::format("trusted_proxies: {}", parsed.error));
      }
    }
  }

  void read_proxy_protocol(const toml::node& value, ProxyProtocol& out) {
    if (const auto v = read_string(value, "proxy_protocol")) {
      if (const auto p = parse_proxy_protocol(*v)) {
        out = *p;
      } else {
        error(value, fmt::format("proxy_protocol must be one of off, v1, v2, got '{}'", *v));
      }
    }
  }

  std::string known_clusters() const {
    std::string out;
    for (const auto& [name, pos] : cluster_names_) {
      out += out.empty() ? "" : ", ";
      out += name;
    }
    return out;
  }

  void read_cluster(const toml::table& table) {
    ClusterConfig cluster;
    cluster.pos = to_pos(table.source());
    bool has_name = false;
    const toml::node* nodes = nullptr;
    for (auto&& [key, value] : table) {
      const std::string_view k = key.str();
      if (k == "name") {
        has_name = true;
        if (auto v = read_name(value)) {
          cluster.name = std::move(*v);
          if (const auto [it, inserted] =
                  cluster_names_.try_emplace(cluster.name, to_pos(value.source()));
              !inserted) {
            error(value, fmt::format("duplicate cluster name '{}' (already defined at line {})",
                                     cluster.name, it->second.line));
          }
        }
      } else if (k == "algorithm") {
        // The balance area owns the list of algorithms; here only the position is kept for it.
        cluster.algorithm_pos = to_pos(value.source());
        if (auto v = read_string(value, k)) {
          cluster.algorithm = std::move(*v);
        }
      } else if (k == "connect_timeout") {
        if (const auto v = read_duration(value, k, true)) {
          cluster.connect_timeout = *v;
        }
      } else if (k == "retry_interval") {
        if (const auto v = read_duration(value, k, true)) {
          cluster.retry_interval = *v;
        }
      } else if (k == "idle_timeout") {
        if (const auto v = read_duration(value, k, false)) {
          cluster.idle_timeout = *v;
        }
      } else if (k == "load_rating") {
        cluster.load_rating_pos = to_pos(value.source());
        if (auto v = read_string(value, k)) {
          cluster.load_rating = std::move(*v);
        }
      } else if (k == "hash_key") {
        cluster.hash_key_pos = to_pos(value.source());
        if (const auto v = read_string(value, k)) {
          cluster.hash_key = read_hash_key(value, *v);
        }
      } else if (k == "affinity") {
        if (const auto* t = value.as_table()) {
          read_affinity(*t, cluster.affinity);
        } else {
          error(value, fmt::format("affinity must be a table, written [cluster.affinity], got {}",
                                   type_name(value)));
        }
      } else if (k == "node") {
        nodes = &value;
      } else if (k == "health" || k == "agent") {
        if (const auto* t = value.as_table(); t == nullptr) {
          error(value, fmt::format("{} must be a table, written [cluster.{}], got {}", k, k,
                                   type_name(value)));
        } else if (k == "health") {
          cluster.health = read_health(*t);
        } else {
          cluster.agent = read_agent(*t);
        }
      } else if (k == "slow_start") {
        if (const auto v = read_duration(value, k, false)) {
          cluster.slow_start = *v;
        }
      } else if (k == "proxy_protocol") {
        read_proxy_protocol(value, cluster.proxy_protocol);
      } else {
        unknown_key(key, "[[cluster]]", kClusterKeys);
      }
    }
    if (!has_name) {
      missing_key(table, "[[cluster]]", "name");
    }
    if (nodes != nullptr) {
      std::map<std::string, SourcePos, std::less<>> node_names;
      for (const toml::table* t : read_table_array(*nodes, "node", "[[cluster.node]]")) {
        read_node(*t, cluster, node_names);
      }
    }
    if (nodes == nullptr || (nodes->as_array() != nullptr && nodes->as_array()->empty())) {
      error(cluster.pos, fmt::format("cluster '{}' has no nodes; add at least one [[cluster.node]]",
                                     cluster.name));
    }
    config_.clusters.push_back(std::move(cluster));
  }

  std::optional<std::array<std::uint8_t, 16>> read_hash_key(const toml::node& node,
                                                            std::string_view hex) {
    if (hex.size() != 32) {
      error(node,
            fmt::format("hash_key must be exactly 32 hex digits (16 bytes), got {} characters",
                        hex.size()));
      return std::nullopt;
    }
    std::array<std::uint8_t, 16> key{};
    for (std::size_t i = 0; i < hex.size(); ++i) {
      const int digit = hex_value(hex[i]);
      if (digit < 0) {
        error(node,
              fmt::format(
                  "hash_key must be exactly 32 hex digits (16 bytes); '{}' at offset {} is not a "
                  "hex digit",
                  hex[i], i));
        return std::nullopt;
      }
      key[i / 2] = static_cast<std::uint8_t>(key[i / 2] * 16 + digit);
    }
    return key;
  }

  // [cluster.health]. Text keys and their _hex forms exclude each other; a timeout longer than
  // the interval would overlap one check with the next.
  HealthConfig read_health(const toml::table& table) {
    HealthConfig health;
    health.pos = to_pos(table.source());
    const toml::node* send_text = nullptr;
    const toml::node* send_hex = nullptr;
    const toml::node* expect_text = nullptr;
    const toml::node* expect_hex = nullptr;
    const toml::node* timeout_node = nullptr;
    for (auto&& [key, value] : table) {
      const std::string_view k = key.str();
      if (k == "interval") {
        if (const auto v = read_duration(value, k, true)) health.interval = *v;
      } else if (k == "timeout") {
        timeout_node = &value;
        if (const auto v = read_duration(value, k, true)) health.timeout = *v;
      } else if (k == "rise" || k == "fall") {
        if (const auto v = read_integer(value, k, 1, 1000)) {
          (k == "rise" ? health.rise : health.fall) = static_cast<std::uint32_t>(*v);
        }
      } else if (k == "send" || k == "expect") {
        (k == "send" ? send_text : expect_text) = &value;
        if (auto v = read_string(value, k)) (k == "send" ? health.send : health.expect) = *v;
      } else if (k == "send_hex" || k == "expect_hex") {
        (k == "send_hex" ? send_hex : expect_hex) = &value;
        if (auto v = read_string(value, k)) {
          if (auto bytes = read_hex_bytes(value, k, *v)) {
            (k == "send_hex" ? health.send : health.expect) = std::move(*bytes);
          }
        }
      } else if (k == "port") {
        if (const auto v = read_integer(value, k, 0, 65535)) {
          health.port = static_cast<std::uint16_t>(*v);
        }
      } else {
        unknown_key(key, "[cluster.health]", kHealthKeys);
      }
    }
    if (send_text != nullptr && send_hex != nullptr) {
      error(*send_hex, "send_hex and send exclude each other; keep one");
    }
    if (expect_text != nullptr && expect_hex != nullptr) {
      error(*expect_hex, "expect_hex and expect exclude each other; keep one");
    }
    if (timeout_node != nullptr && health.timeout && *health.timeout > health.interval) {
      error(*timeout_node, fmt::format("timeout ({}) must not be longer than interval ({})",
                                       format_duration(*health.timeout),
                                       format_duration(health.interval)));
    }
    return health;
  }

  // Hex digits, two per byte (upper or lower case); reports and returns nullopt otherwise.
  std::optional<std::string> read_hex_bytes(const toml::node& node, std::string_view key,
                                            std::string_view hex) {
    if (hex.empty() || hex.size() % 2 != 0) {
      error(node, fmt::format("{} must be an even, non-zero number of hex digits, got {}", key,
                              hex.size()));
      return std::nullopt;
    }
    std::string bytes;
    for (std::size_t i = 0; i < hex.size(); i += 2) {
      const int high = hex_value(hex[i]);
      const int low = hex_value(hex[i + 1]);
      if (high < 0 || low < 0) {
        error(node, fmt::format("{}: '{}' at offset {} is not a hex digit", key,
                                high < 0 ? hex[i] : hex[i + 1], high < 0 ? i : i + 1));
        return std::nullopt;
      }
      bytes.push_back(static_cast<char>(high * 16 + low));
    }
    return bytes;
  }

  // [cluster.agent]: port is required.
  AgentConfig read_agent(const toml::table& table) {
    AgentConfig agent;
    agent.pos = to_pos(table.source());
    bool has_port = false;
    for (auto&& [key, value] : table) {
      const std::string_view k = key.str();
      if (k == "port") {
        has_port = true;
        if (const auto v = read_integer(value, k, 1, 65535)) {
          agent.port = static_cast<std::uint16_t>(*v);
        }
      } else if (k == "interval") {
        if (const auto v = read_duration(value, k, true)) agent.interval = *v;
      } else if (k == "timeout") {
        if (const auto v = read_duration(value, k, true)) agent.timeout = *v;
      } else {
        unknown_key(key, "[cluster.agent]", kAgentKeys);
      }
    }
    if (!has_port) missing_key(table, "[cluster.agent]", "port");
    return agent;
  }

  void read_affinity(const toml::table& table, AffinityConfig& affinity) {
    for (auto&& [key, value] : table) {
      const std::string_view k = key.str();
      if (k == "enabled") {
        if (const auto v = read_bool(value, k)) {
          affinity.enabled = *v;
        }
      } else if (k == "ttl") {
        if (const auto v = read_duration(value, k, true)) {
          affinity.ttl = *v;
        }
      } else if (k == "prefix_v4") {
        if (const auto v = read_integer(value, k, 1, 32)) {
          affinity.prefix_v4 = static_cast<std::uint8_t>(*v);
        }
      } else if (k == "prefix_v6") {
        if (const auto v = read_integer(value, k, 1, 128)) {
          affinity.prefix_v6 = static_cast<std::uint8_t>(*v);
        }
      } else {
        unknown_key(key, "[cluster.affinity]", kAffinityKeys);
      }
    }
  }

  void read_node(const toml::table& table, ClusterConfig& cluster,
                 std::map<std::string, SourcePos, std::less<>>& node_names) {
    NodeConfig node;
    node.pos = to_pos(table.source());
    node.proxy_protocol = cluster.proxy_protocol;  // read before the nodes
    bool has_name = false;
    bool has_address = false;
    for (auto&& [key, value] : table) {
      const std::string_view k = key.str();
      if (k == "name") {
        has_name = true;
        if (auto v = read_name(value)) {
          node.name = std::move(*v);
          if (const auto [it, inserted] = node_names.try_emplace(node.name, to_pos(value.source()));
              !inserted) {
            error(
                value,
                fmt::format("duplicate node name '{}' in cluster '{}' (already defined at line {})",
                            node.name, cluster.name, it->second.line));
          }
        }
      } else if (k == "address") {
        has_address = true;
        if (const auto* s = value.as_string()) {
          node.address = s->get();
        }
        if (const auto ep = read_endpoint(value, k, false)) {
          node.endpoint = *ep;
        }
      } else if (k == "load_factor") {
        read_load_factor(value, node);
      } else if (k == "max_connections") {
        if (const auto v = read_integer(value, k, 0, kMaxU32)) {
          node.max_connections = static_cast<std::uint32_t>(*v);
        }
      } else if (k == "fallover") {
        // Whether the node exists and the chain has no loop is the balance area's check.
        node.fallover_pos = to_pos(value.source());
        if (auto v = read_string(value, k)) {
          node.fallover = std::move(*v);
        }
      } else if (k == "tier") {
        // "tier >= 1" is checked with the other cluster rules in the balance area; here only what
        // the field cannot hold is refused.
        node.tier_pos = to_pos(value.source());
        if (const auto* i = value.as_integer(); i == nullptr) {
          error(value, fmt::format("tier must be an integer, got {}", type_name(value)));
        } else if (i->get() < 0 || i->get() > kMaxU32) {
          error(value, fmt::format("tier must be from 1 to {}, got {}", kMaxU32, i->get()));
        } else {
          node.tier = static_cast<std::uint32_t>(i->get());
        }
      } else if (k == "state") {
        if (const auto v = read_string(value, k)) {
          if (const auto state = parse_admin_state(*v)) {
            node.state = *state;
          } else {
            error(value,
                  fmt::format(
                      "state must be one of available, draining, offline (or green, yellow, red), "
                      "got '{}'",
                      *v));
          }
        }
      } else if (k == "proxy_protocol") {
        read_proxy_protocol(value, node.proxy_protocol);
      } else {
        unknown_key(key, "[[cluster.node]]", kNodeKeys);
      }
    }
    if (!has_name) {
      missing_key(table, "[[cluster.node]]", "name");
    }
    if (!has_address) {
      missing_key(table, "[[cluster.node]]", "address");
    }
    cluster.nodes.push_back(std::move(node));
  }

  void read_load_factor(const toml::node& value, NodeConfig& node) {
    double factor = 0;
    if (const auto* i = value.as_integer()) {
      factor = static_cast<double>(i->get());
    } else if (const auto* f = value.as_floating_point()) {
      factor = f->get();
    } else {
      error(value, fmt::format("load_factor must be a number (integer or float), got {}",
                               type_name(value)));
      return;
    }
    // Written so that NaN fails too.
    if (!(factor > 0 && factor <= kMaxLoadFactor)) {
      error(value,
            fmt::format("load_factor must be greater than 0 and at most 1000000, got {}", factor));
      return;
    }
    node.load_factor = factor;
  }

  std::string source_name_;
  fs::path base_dir_;
  Config config_;
  std::vector<Diagnostic> errors_;
  // Every name declared, also in entries that have other errors, so that one mistake does not
  // cause a second report ("unknown cluster") elsewhere.
  std::map<std::string, SourcePos, std::less<>> cluster_names_;
  std::map<std::string, SourcePos, std::less<>> listener_names_;
  bool admin_socket_only_ = false;
};

LoadResult load_from_file(const fs::path& file, bool admin_socket_only) {
  Loader loader(file.string(), file.parent_path());
  if (admin_socket_only) {
    loader.only_admin_socket();
  }
  std::error_code ec;
  if (fs::is_directory(file, ec)) {
    return loader.fail("cannot read configuration file: it is a directory");
  }
  std::FILE* stream = std::fopen(file.c_str(), "rb");
  if (stream == nullptr) {
    return loader.fail(fmt::format("cannot read configuration file: {}", std::strerror(errno)));
  }
  std::string text;
  std::array<char, 8192> buffer{};
  std::size_t n = 0;
  while ((n = std::fread(buffer.data(), 1, buffer.size(), stream)) > 0) {
    text.append(buffer.data(), n);
  }
  const bool failed = std::ferror(stream) != 0;
  const int read_errno = errno;
  std::fclose(stream);
  if (failed) {
    return loader.fail(
        fmt::format("cannot read configuration file: {}", std::strerror(read_errno)));
  }
  fs::path absolute = fs::absolute(file, ec);
  return loader.run(text, ec ? file : absolute.lexically_normal());
}

}  // namespace

LoadResult load_file(const fs::path& file) {
  return load_from_file(file, false);
}

std::optional<fs::path> find_admin_socket(const fs::path& file, std::vector<Diagnostic>& errors) {
  LoadResult result = load_from_file(file, true);
  if (!result.config) {
    errors = std::move(result.errors);
    return std::nullopt;
  }
  return result.config->admin.socket;
}

LoadResult load_string(std::string_view text, const std::string& source_name,
                       const fs::path& base_dir) {
  return Loader(source_name, base_dir).run(text, fs::path{});
}

std::shared_ptr<const Config> make_quick_config(const Endpoint& listen,
                                                const std::vector<Endpoint>& nodes,
                                                std::string algorithm,
                                                const std::string& listen_text,
                                                const std::vector<std::string>& node_texts) {
  std::vector<NodeConfig> node_configs;
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    NodeConfig node;
    node.name = fmt::format("node{}", i + 1);
    node.endpoint = nodes[i];
    node.address = i < node_texts.size() ? node_texts[i] : format_endpoint(nodes[i]);
    node_configs.push_back(std::move(node));
  }
  return make_quick_config(listen, std::move(node_configs), std::move(algorithm), listen_text,
                           std::nullopt);
}

std::shared_ptr<const Config> make_quick_config(
    const Endpoint& listen, std::vector<NodeConfig> nodes, std::string algorithm,
    const std::string& listen_text, std::optional<std::array<std::uint8_t, 16>> hash_key) {
  auto config = std::make_shared<Config>();
  std::error_code ec;
  fs::path cwd = fs::current_path(ec);
  config->service.state_dir = (ec ? fs::path("var") : cwd / "var").lexically_normal();
  config->admin.socket = config->service.state_dir / "admin.sock";  // unused: no admin API

  ClusterConfig cluster;
  cluster.name = "default";
  cluster.algorithm = std::move(algorithm);
  cluster.hash_key = hash_key;
  cluster.nodes = std::move(nodes);
  config->clusters.push_back(std::move(cluster));

  ListenerConfig listener;
  listener.name = "default";
  listener.address = listen_text.empty() ? format_endpoint(listen) : listen_text;
  listener.endpoint = listen;
  listener.cluster = "default";
  config->listeners.push_back(std::move(listener));
  return config;
}

std::optional<std::string> read_password_file(const std::filesystem::path& file,
                                              std::string& error) {
  std::ifstream in(file, std::ios::binary);
  if (!in) {
    error = fmt::format("cannot read {}: {}", file.string(), std::strerror(errno));
    return std::nullopt;
  }
  std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in.bad()) {
    error = fmt::format("cannot read {}", file.string());
    return std::nullopt;
  }
  if (text.ends_with("\r\n")) {
    text.resize(text.size() - 2);
  } else if (text.ends_with('\n')) {
    text.pop_back();
  }
  if (text.empty()) {
    error = fmt::format("{} is empty; expected the Redis password", file.string());
    return std::nullopt;
  }
  if (text.find_first_of("\r\n") != std::string::npos) {
    error = fmt::format("{} holds more than one line; expected only the Redis password",
                        file.string());
    return std::nullopt;
  }
  return text;
}

}  // namespace pb::config
