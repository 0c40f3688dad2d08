#pragma once

// The configuration loader's class, shared by the files that read its parts: loader.cpp (the
// document, diagnostics and typed readers), loader_service.cpp ([service], [admin], [metrics],
// [snmp], [access_log], [twin]), loader_listener.cpp ([[listener]] and what it holds) and
// loader_cluster.cpp ([[cluster]], its nodes, health check, agent and affinity). A new key goes
// into the reader of its section, with its name in that file's list of allowed keys. Private to
// src/config: the rest of the product calls load_file() and load_string() (config.hpp).

#include <toml++/toml.h>

#include <array>
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "protobalance/config/config.hpp"
#include "protobalance/config/duration.hpp"

namespace pb::config::detail {

namespace fs = std::filesystem;
using Keys = std::span<const std::string_view>;

SourcePos to_pos(const toml::source_region& region);
// "a, b, c": a list of allowed words in a message.
std::string join(Keys words);
// How a TOML type is called in messages, in the words of the TOML specification.
std::string_view type_name(const toml::node& node);
// Names end up in metrics labels, log lines, SQLite keys and pbadmin arguments, so they are kept
// to characters that need no quoting anywhere.
bool is_valid_name(std::string_view name);

// Reads one TOML document into a Config. Every reader reports what it finds wrong and carries on,
// so that one run shows the operator all problems; the Config is handed out only when none was
// found. Positions come from toml++ (1-based line and column of the key or value concerned).
class Loader {
 public:
  Loader(std::string source_name, const fs::path& base_dir);
  LoadResult run(std::string_view text, fs::path file);

  // From now on only [service] state_dir and [admin] socket are read (find_admin_socket()).
  void only_admin_socket() { admin_socket_only_ = true; }

  // Reports a problem that concerns the file as a whole (for example, it cannot be read).
  LoadResult fail(std::string message);

 private:
  // loader.cpp: diagnostics
  void error(SourcePos pos, std::string message);
  void error(const toml::node& node, std::string message);
  void unknown_key(const toml::key& key, std::string_view where, Keys allowed);
  void missing_key(const toml::table& table, std::string_view where, std::string_view key);
  LoadResult finish();

  // loader.cpp: typed readers; each returns nullopt after reporting a wrong type or value
  std::optional<std::string> read_string(const toml::node& node, std::string_view key);
  std::optional<std::int64_t> read_integer(const toml::node& node, std::string_view key,
                                           std::int64_t min, std::int64_t max);
  std::optional<bool> read_bool(const toml::node& node, std::string_view key);
  std::optional<Duration> read_duration(const toml::node& node, std::string_view key,
                                        bool positive);
  std::optional<std::string> read_name(const toml::node& node);
  std::optional<Endpoint> read_endpoint(const toml::node& node, std::string_view key,
                                        bool allow_port_zero);
  std::vector<const toml::table*> read_table_array(const toml::node& node, std::string_view key,
                                                   std::string_view header);
  std::vector<PlacedText> read_placed_strings(const toml::node& value, std::string_view key);
  std::optional<std::string> read_hex_bytes(const toml::node& node, std::string_view key,
                                            std::string_view hex);

  // loader.cpp: the document
  void read_root(const toml::table& root);

  // loader_service.cpp
  void read_service(const toml::table& table);
  void resolve_state_dir();
  void read_admin(const toml::table& table);
  void resolve_admin_socket();
  void read_observability_section(std::string_view section, const toml::node& value);
  void read_metrics(const toml::table& table);
  void read_snmp(const toml::table& table);
  void read_agentx(const toml::node& node, std::string_view text);
  void read_access_log(const toml::table& table);
  void resolve_access_log_path();
  void read_twin(const toml::node& node);
  bool parse_redis_address(std::string_view text, TwinConfig& twin, std::string& message);

  // loader_listener.cpp
  void read_listener(const toml::table& table);
  ValidateConfig read_validate(const toml::table& table);
  SniRouteConfig read_route(const toml::table& table);
  void read_trusted_proxies(const toml::node& value, ListenerConfig& listener);
  std::string known_clusters() const;

  // loader_cluster.cpp
  void read_cluster(const toml::table& table);
  std::optional<std::array<std::uint8_t, 16>> read_hash_key(const toml::node& node,
                                                            std::string_view hex);
  HealthConfig read_health(const toml::table& table);
  AgentConfig read_agent(const toml::table& table);
  void read_affinity(const toml::table& table, AffinityConfig& affinity);
  void read_node(const toml::table& table, ClusterConfig& cluster,
                 std::map<std::string, SourcePos, std::less<>>& node_names);
  void read_load_factor(const toml::node& value, NodeConfig& node);
  void read_proxy_protocol(const toml::node& value, ProxyProtocol& out);

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

}  // namespace pb::config::detail
