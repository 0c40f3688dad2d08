// The configuration loader's [[listener]] sections, with their guards ([listener.validate],
// allow/deny, limits), PROXY protocol in and [[listener.route]].
#include <fmt/format.h>

#include <algorithm>
#include <cstdint>
#include <utility>

#include "loader.hpp"
#include "protobalance/config/address.hpp"
#include "protobalance/config/network.hpp"

namespace pb::config::detail {
namespace {

constexpr std::array<std::string_view, 12> kListenerKeys{
    "name",          "listen", "cluster", "accept_proxy",           "trusted_proxies",
    "proxy_timeout", "allow",  "deny",    "max_client_connections", "max_client_rate",
    "validate",      "route"};
constexpr std::array<std::string_view, 3> kValidateKeys{"timeout", "max_bytes", "expect"};
constexpr std::array<std::string_view, 2> kRouteKeys{"sni", "cluster"};
// The first bytes are peeked into one pooled buffer (net::BufferPool::kBufferSize).
constexpr std::int64_t kMaxValidateBytes = 16 * 1024;

}  // namespace

void Loader::read_listener(const toml::table& table) {
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

// [listener.validate]: `expect` is required (a validation without an expression would let
// everything through); the expression itself is compiled by pb::net::validate_guards.
ValidateConfig Loader::read_validate(const toml::table& table) {
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
SniRouteConfig Loader::read_route(const toml::table& table) {
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
void Loader::read_trusted_proxies(const toml::node& value, ListenerConfig& listener) {
  const auto* array = value.as_array();
  if (array == nullptr) {
    error(value, fmt::format("trusted_proxies must be an array of address blocks like "
                             "\"10.0.0.0/8\", got {}",
                             type_name(value)));
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

std::string Loader::known_clusters() const {
  std::string out;
  for (const auto& [name, pos] : cluster_names_) {
    out += out.empty() ? "" : ", ";
    out += name;
  }
  return out;
}

}  // namespace pb::config::detail
