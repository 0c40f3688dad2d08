// The configuration loader's service sections: [service], [admin], [metrics], [snmp],
// [access_log] and [twin].
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <limits>
#include <system_error>
#include <utility>

#include "loader.hpp"
#include "protobalance/config/address.hpp"

namespace pb::config::detail {
namespace {

constexpr std::array<std::string_view, 4> kServiceKeys{"threads", "state_dir", "shutdown_timeout",
                                                       "log_level"};
constexpr std::array<std::string_view, 7> kLogLevels{"trace", "debug",    "info", "warn",
                                                     "error", "critical", "off"};
constexpr std::array<std::string_view, 1> kMetricsKeys{"listen"};
constexpr std::array<std::string_view, 1> kAdminKeys{"socket"};
// sockaddr_un::sun_path holds 108 bytes with the terminating NUL.
constexpr std::size_t kMaxSocketPath = 107;
constexpr std::array<std::string_view, 2> kSnmpKeys{"enabled", "agentx"};
constexpr std::array<std::string_view, 2> kAccessLogKeys{"enabled", "path"};
constexpr std::array<std::string_view, 6> kTwinKeys{
    "redis", "password_file", "database", "key_prefix", "instance", "lookup_timeout"};

std::string host_name() {
  std::array<char, 256> buffer{};
  if (::gethostname(buffer.data(), buffer.size() - 1) != 0 || buffer[0] == '\0') {
    return "protobalance";
  }
  return std::string(buffer.data());
}

}  // namespace

void Loader::read_service(const toml::table& table) {
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
          error(value, fmt::format("log_level must be one of {}, got '{}'", join(kLogLevels), *v));
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
void Loader::resolve_state_dir() {
  fs::path& dir = config_.service.state_dir;
  if (dir.is_relative()) {
    dir = base_dir_ / dir;
  }
  dir = dir.lexically_normal();
}

void Loader::read_admin(const toml::table& table) {
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
void Loader::resolve_admin_socket() {
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
void Loader::read_observability_section(std::string_view section, const toml::node& value) {
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

void Loader::read_metrics(const toml::table& table) {
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

void Loader::read_snmp(const toml::table& table) {
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
void Loader::read_agentx(const toml::node& node, std::string_view text) {
  constexpr std::string_view kExpected =
      "expected a Unix socket path such as \"/var/agentx/master\", \"unix:PATH\" or "
      "\"tcp:HOST:PORT\"";
  const std::size_t colon = text.find(':');
  const std::string_view scheme = colon == std::string_view::npos ? "" : text.substr(0, colon);
  const bool has_scheme = !scheme.empty() && std::all_of(scheme.begin(), scheme.end(), [](char c) {
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
  config_.snmp.agentx = (path.is_relative() ? base_dir_ / path : path).lexically_normal().string();
}

void Loader::read_access_log(const toml::table& table) {
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
void Loader::resolve_access_log_path() {
  fs::path& path = config_.access_log.path;
  if (path != "-" && path.is_relative()) {
    path = (config_.service.state_dir / path).lexically_normal();
  }
}

// [twin]: syntax and files only; nothing connects to Redis here (--check stays offline).
void Loader::read_twin(const toml::node& node) {
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
        const fs::path path =
            (fs::path(*v).is_relative() ? base_dir_ / *v : fs::path(*v)).lexically_normal();
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
bool Loader::parse_redis_address(std::string_view text, TwinConfig& twin, std::string& message) {
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
  const auto [end, ec] =
      std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
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

}  // namespace pb::config::detail
