// The configuration loader's [[cluster]] sections: the cluster's keys, [cluster.health],
// [cluster.agent], [cluster.affinity] and its [[cluster.node]]s.
#include <fmt/format.h>

#include <limits>
#include <utility>

#include "loader.hpp"
#include "protobalance/config/address.hpp"

namespace pb::config::detail {
namespace {

constexpr std::array<std::string_view, 14> kClusterKeys{
    "name",        "algorithm",  "connect_timeout", "retry_interval", "idle_timeout",
    "load_rating", "hash_key",   "affinity",        "node",           "health",
    "agent",       "slow_start", "proxy_protocol",  "half_close"};
constexpr std::array<std::string_view, 9> kHealthKeys{
    "interval", "timeout", "rise", "fall", "send", "expect", "send_hex", "expect_hex", "port"};
constexpr std::array<std::string_view, 3> kAgentKeys{"port", "interval", "timeout"};
constexpr std::array<std::string_view, 4> kAffinityKeys{"enabled", "ttl", "prefix_v4", "prefix_v6"};
constexpr std::array<std::string_view, 8> kNodeKeys{
    "name",     "address", "load_factor", "max_connections",
    "fallover", "tier",    "state",       "proxy_protocol"};

constexpr std::int64_t kMaxU32 = std::numeric_limits<std::uint32_t>::max();
constexpr double kMaxLoadFactor = 1e6;

}  // namespace

void Loader::read_cluster(const toml::table& table) {
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
    } else if (k == "half_close") {
      if (const auto v = read_bool(value, k)) {
        cluster.half_close = *v;
      }
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

std::optional<std::array<std::uint8_t, 16>> Loader::read_hash_key(const toml::node& node,
                                                                  std::string_view hex) {
  if (hex.size() != 32) {
    error(node, fmt::format("hash_key must be exactly 32 hex digits (16 bytes), got {} characters",
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
HealthConfig Loader::read_health(const toml::table& table) {
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
    error(*timeout_node,
          fmt::format("timeout ({}) must not be longer than interval ({})",
                      format_duration(*health.timeout), format_duration(health.interval)));
  }
  return health;
}

// [cluster.agent]: port is required.
AgentConfig Loader::read_agent(const toml::table& table) {
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

void Loader::read_affinity(const toml::table& table, AffinityConfig& affinity) {
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

void Loader::read_node(const toml::table& table, ClusterConfig& cluster,
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
          error(value,
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

void Loader::read_load_factor(const toml::node& value, NodeConfig& node) {
  double factor = 0;
  if (const auto* i = value.as_integer()) {
    factor = static_cast<double>(i->get());
  } else if (const auto* f = value.as_floating_point()) {
    factor = f->get();
  } else {
    error(value,
          fmt::format("load_factor must be a number (integer or float), got {}", type_name(value)));
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

void Loader::read_proxy_protocol(const toml::node& value, ProxyProtocol& out) {
  if (const auto v = read_string(value, "proxy_protocol")) {
    if (const auto p = parse_proxy_protocol(*v)) {
      out = *p;
    } else {
      error(value, fmt::format("proxy_protocol must be one of off, v1, v2, got '{}'", *v));
    }
  }
}

}  // namespace pb::config::detail
