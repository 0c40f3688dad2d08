#include "protobalance/control/admin_api.hpp"

#include <algorithm>
#include <exception>
#include <set>
#include <utility>
#include <variant>

#include <boost/asio/ip/address.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "protobalance/affinity/client_key.hpp"
#include "protobalance/config/duration.hpp"
#include "protobalance/config/utc_time.hpp"
#include "protobalance/control/status_document.hpp"

namespace pb::control {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

std::string names_of(const config::ClusterConfig& cluster) {
  std::string text;
  for (const auto& node : cluster.nodes) text += (text.empty() ? "" : ", ") + node.name;
  return text;
}

// Sorted, as the 404 has always listed them.
std::string cluster_names(const config::Config& cfg) {
  std::set<std::string> names;
  for (const auto& cluster : cfg.clusters) names.insert(cluster.name);
  std::string text;
  for (const auto& name : names) text += (text.empty() ? "" : ", ") + name;
  return text;
}

// The cluster named `name`, or the 404 that says which clusters there are.
std::variant<const config::ClusterConfig*, AdminResponse> find_cluster(const config::Config& cfg,
                                                                       const std::string& name) {
  const config::ClusterConfig* cluster = cfg.find_cluster(name);
  if (cluster == nullptr) {
    return error_response(404, fmt::format("no cluster named {}; clusters: {}", name,
                                           cluster_names(cfg)));
  }
  return cluster;
}

// A client address or network from a request, or the 400 that shows the accepted forms.
std::variant<affinity::ClientKey, AdminResponse> client_field(const std::string& client) {
  auto given = affinity::parse_client(client);
  if (!given) {
    return error_response(400, fmt::format("client '{}' is not an address or network (e.g. "
                                           "192.0.2.7, 192.0.2.0/24, 2001:db8::/64)",
                                           client));
  }
  return *given;
}

AdminResponse get_status(const Balancer& balancer) {
  return AdminResponse{200, status_document(balancer.status()), {}};
}

AdminResponse put_node_state(Balancer& balancer, const std::string& cluster_name,
                             const std::string& node_name, std::string_view body) {
  auto parsed = parse_fields(body, {"state"}, {});
  if (auto* refused = std::get_if<AdminResponse>(&parsed)) return std::move(*refused);
  const std::string& word = std::get<Fields>(parsed).values.at("state");
  const auto state = config::parse_admin_state(word);
  if (!state) {
    return error_response(400, fmt::format("state must be one of available, draining, offline (or "
                                           "green, yellow, red), got '{}'",
                                           word));
  }
  const auto cfg = balancer.config();
  auto found = find_cluster(*cfg, cluster_name);
  if (auto* refused = std::get_if<AdminResponse>(&found)) return std::move(*refused);
  const config::ClusterConfig& cluster = *std::get<const config::ClusterConfig*>(found);
  const auto previous = balancer.node_state(cluster_name, node_name);
  if (!previous) {
    return error_response(404, fmt::format("cluster {} has no node named {}; nodes: {}",
                                           cluster_name, node_name, names_of(cluster)));
  }
  if (!balancer.set_node_state(cluster_name, node_name, *state)) {
    return error_response(404,
                          fmt::format("cluster {} has no node named {}", cluster_name, node_name));
  }
  return AdminResponse{200,
                       json::object{{"cluster", cluster_name},
                                    {"node", node_name},
                                    {"state", config::to_string(*state)},
                                    {"previous", config::to_string(*previous)}},
                       {}};
}

AdminResponse post_reload(Balancer& balancer) {
  const ReloadResult result = balancer.reload();
  json::array changes;
  for (const auto& change : result.changes) changes.emplace_back(change);
  json::array errors;
  for (const auto& error : result.errors) errors.emplace_back(error);
  json::object body{{"ok", result.ok}, {"changes", std::move(changes)}, {"errors", errors}};
  if (!result.ok) {
    body["error"] =
        fmt::format("reload refused ({} error{}); the running configuration is unchanged",
                    result.errors.size(), result.errors.size() == 1 ? "" : "s");
    return AdminResponse{422, std::move(body), {}};
  }
  return AdminResponse{200, std::move(body), {}};
}

json::object route_body(const Balancer& balancer, const std::string& listener) {
  std::string configured;
  for (const auto& l : balancer.config()->listeners) {
    if (l.name == listener) configured = l.cluster;
  }
  const auto routes = balancer.routes();
  const auto route = routes.find(listener);
  const std::string current = route == routes.end() ? configured : route->second;
  return json::object{{"listener", listener},
                      {"cluster", current},
                      {"configured_cluster", configured},
                      {"routed", current != configured}};
}

AdminResponse route_listener(Balancer& balancer, const std::string& listener, bool reset,
                             std::string_view body) {
  std::string cluster;
  if (!reset) {
    auto parsed = parse_fields(body, {"cluster"}, {});
    if (auto* refused = std::get_if<AdminResponse>(&parsed)) return std::move(*refused);
    cluster = std::get<Fields>(parsed).values.at("cluster");
    if (cluster.empty()) {
      return error_response(400, "cluster must not be empty; DELETE the route to reset it");
    }
  }
  const std::string problem = balancer.route(listener, cluster);
  if (!problem.empty()) return error_response(404, problem);
  return AdminResponse{200, route_body(balancer, listener), {}};
}

// The key under which `cluster` files the client an operator named: a whole address is cut to
// the cluster's prefix (as sessions do with their peer address); a network is kept as given.
affinity::ClientKey key_in_cluster(const affinity::ClientKey& given,
                                   const config::AffinityConfig& cfg) {
  const bool whole = given.family_prefix() == (given.is_v4() ? 32 : 128);
  if (!whole) return given;
  const asio::ip::address_v6 v6(given.bytes);
  const asio::ip::address address =
      given.is_v4() ? asio::ip::address(asio::ip::make_address_v4(asio::ip::v4_mapped, v6))
                    : asio::ip::address(v6);
  return affinity::make_key(address, cfg.prefix_v4, cfg.prefix_v6);
}

AdminResponse put_affinity(Balancer& balancer, std::string_view body) {
  auto parsed = parse_fields(body, {"cluster", "client", "node"}, {});
  if (auto* refused = std::get_if<AdminResponse>(&parsed)) return std::move(*refused);
  const auto& values = std::get<Fields>(parsed).values;
  const std::string& cluster_name = values.at("cluster");
  const std::string& client = values.at("client");
  const std::string& node_name = values.at("node");

  auto parsed_client = client_field(client);
  if (auto* refused = std::get_if<AdminResponse>(&parsed_client)) return std::move(*refused);
  const affinity::ClientKey* given = &std::get<affinity::ClientKey>(parsed_client);
  const auto config = balancer.config();
  auto found = find_cluster(*config, cluster_name);
  if (auto* refused = std::get_if<AdminResponse>(&found)) return std::move(*refused);
  const config::ClusterConfig& cfg = *std::get<const config::ClusterConfig*>(found);
  if (!cfg.affinity.enabled) {
    return error_response(409,
                          fmt::format("cluster {} does not use client affinity ([cluster.affinity] "
                                      "enabled = false); a pin would never be used",
                                      cluster_name));
  }
  if (cfg.find_node(node_name) == nullptr) {
    return error_response(404, fmt::format("cluster {} has no node named {}; nodes: {}",
                                           cluster_name, node_name, names_of(cfg)));
  }
  const affinity::ClientKey key = key_in_cluster(*given, cfg.affinity);
  const std::uint8_t expected = key.is_v4() ? cfg.affinity.prefix_v4 : cfg.affinity.prefix_v6;
  if (key.family_prefix() != expected) {
    return error_response(400, fmt::format("cluster {} keys {} clients by /{} networks; give an "
                                           "address or a /{} network, not {}",
                                           cluster_name, key.is_v4() ? "IPv4" : "IPv6", expected,
                                           expected, client));
  }
  const auto now = affinity::Clock::now();
  const auto previous = balancer.affinity().lookup(cluster_name, key, now, cfg.affinity.ttl);
  balancer.affinity().pin(cluster_name, key, node_name, now);
  spdlog::info("affinity: client {} pinned to {}/{}{}", key.to_string(), cluster_name, node_name,
               previous ? fmt::format(" (was {})", *previous) : std::string());
  return AdminResponse{200,
                       json::object{{"cluster", cluster_name},
                                    {"client", key.to_string()},
                                    {"node", node_name},
                                    {"previous", previous ? json::value(*previous) : nullptr}},
                       {}};
}

AdminResponse delete_affinity(Balancer& balancer, const RequestTarget& target) {
  std::string client;
  std::string cluster_name;
  for (const auto& [key, value] : target.query) {
    if (key == "client") {
      client = value;
    } else if (key == "cluster") {
      cluster_name = value;
    } else {
      return error_response(400, fmt::format("unknown query parameter '{}'; expected client and "
                                             "optionally cluster",
                                             key));
    }
  }
  if (client.empty()) {
    return error_response(400, "missing query parameter client (DELETE /v1/affinity?client=ADDR)");
  }
  auto parsed_client = client_field(client);
  if (auto* refused = std::get_if<AdminResponse>(&parsed_client)) return std::move(*refused);
  const affinity::ClientKey* given = &std::get<affinity::ClientKey>(parsed_client);
  const auto config = balancer.config();
  std::vector<const config::ClusterConfig*> clusters;
  if (!cluster_name.empty()) {
    auto found = find_cluster(*config, cluster_name);
    if (auto* refused = std::get_if<AdminResponse>(&found)) return std::move(*refused);
    clusters.push_back(std::get<const config::ClusterConfig*>(found));
  } else {
    for (const auto& cfg : config->clusters) {
      if (cfg.affinity.enabled) clusters.push_back(&cfg);
    }
  }
  // Every entry the named client or network overlaps: "192.0.2.7" forgets the /24 entry that
  // holds it in a cluster keyed by /24, "192.0.2.0/24" forgets each /32 entry in it.
  json::array forgotten;
  for (const config::ClusterConfig* cfg : clusters) {
    const affinity::ClientKey key = key_in_cluster(*given, cfg->affinity);
    bool any = false;
    for (const auto& row : balancer.affinity().overlapping(cfg->name, key)) {
      const auto entry = affinity::parse_client(row.client);
      if (!entry || !entry->overlaps(key)) continue;
      if (balancer.affinity().forget(cfg->name, *entry)) {
        any = true;
        forgotten.push_back(json::object{
            {"cluster", cfg->name}, {"client", entry->to_string()}, {"node", row.node}});
        spdlog::info("affinity: client {} forgotten in cluster {} (was on {})", entry->to_string(),
                     cfg->name, row.node);
      }
    }
    // The database may hold a row that the map no longer does (expired): it goes too.
    if (!any) balancer.affinity().forget(cfg->name, key);
  }
  if (forgotten.empty()) {
    std::string where = cluster_name.empty() ? std::string("any cluster with affinity")
                                             : "cluster " + cluster_name;
    return error_response(404, fmt::format("no affinity entry for {} in {}", client, where));
  }
  return AdminResponse{200, json::object{{"forgotten", std::move(forgotten)}}, {}};
}

// ---- the block list ----

// The longest --for taken; a block meant to last longer is one without an end.
constexpr std::chrono::hours kLongestBlock{24 * 3650};

std::int64_t unix_seconds(net::BlockClock::time_point t, bool round_up) {
  const auto since = t.time_since_epoch();
  const auto whole = std::chrono::duration_cast<std::chrono::seconds>(since);
  return whole.count() + (round_up && whole < since ? 1 : 0);
}

json::object block_object(const net::Block& block) {
  return json::object{
      {"network", net::network_text(block.network)},
      {"listener", block.listener.empty() ? json::value(nullptr) : json::value(block.listener)},
      {"created", config::format_utc(unix_seconds(block.created, false))},
      {"expires", block.expires
                      ? json::value(config::format_utc(unix_seconds(*block.expires, true)))
                      : json::value(nullptr)}};
}

json::array block_array(const std::vector<net::Block>& blocks) {
  json::array array;
  for (const auto& block : blocks) array.push_back(block_object(block));
  return array;
}

// A network from a request, or the 400 that says what is expected.
std::variant<config::Network, AdminResponse> network_field(const std::string& text) {
  auto parsed = config::parse_network(text);
  if (!parsed.network) return error_response(400, "network: " + parsed.error);
  return *parsed.network;
}

// The listener names of the configuration, for messages.
std::string listener_names(const config::Config& cfg) {
  std::string text;
  for (const auto& listener : cfg.listeners) text += (text.empty() ? "" : ", ") + listener.name;
  return text;
}

AdminResponse put_block(Balancer& balancer, std::string_view body) {
  auto parsed = parse_fields(body, {"network"}, {"for", "listener"});
  if (auto* refused = std::get_if<AdminResponse>(&parsed)) return std::move(*refused);
  const auto& values = std::get<Fields>(parsed).values;
  auto network = network_field(values.at("network"));
  if (auto* refused = std::get_if<AdminResponse>(&network)) return std::move(*refused);

  net::Block block;
  block.network = std::get<config::Network>(network);
  block.created = net::BlockClock::now();
  if (const auto it = values.find("for"); it != values.end()) {
    const auto length = config::parse_duration(it->second);
    if (!length || length->count() <= 0 || *length > kLongestBlock) {
      return error_response(400, fmt::format("for: '{}' is not a duration between 1s and 3650d "
                                             "(e.g. 90s, 10m, 12h, 30d); leave it out for a "
                                             "block without an end",
                                             it->second));
    }
    // Whole seconds, rounded up: what the database and the documents hold, never shorter than
    // asked.
    const auto end = block.created + *length;
    block.expires = net::BlockClock::time_point(std::chrono::seconds(unix_seconds(end, true)));
  }
  if (const auto it = values.find("listener"); it != values.end()) {
    block.listener = it->second;
    const auto cfg = balancer.config();
    const bool known = std::any_of(cfg->listeners.begin(), cfg->listeners.end(),
                                   [&](const auto& l) { return l.name == block.listener; });
    if (block.listener.empty() || !known) {
      return error_response(404, fmt::format("no listener named '{}'; listeners: {}",
                                             block.listener, listener_names(*cfg)));
    }
  }
  const std::string problem = balancer.block(block);
  if (!problem.empty()) return error_response(404, problem);
  return AdminResponse{200, json::object{{"block", block_object(block)}}, {}, true};
}

AdminResponse delete_block(Balancer& balancer, const RequestTarget& target) {
  std::string network_text;
  std::optional<std::string> listener;
  for (const auto& [key, value] : target.query) {
    if (key == "network") {
      network_text = value;
    } else if (key == "listener") {
      listener = value;
    } else {
      return error_response(400, fmt::format("unknown query parameter '{}'; expected network and "
                                             "optionally listener",
                                             key));
    }
  }
  if (network_text.empty()) {
    return error_response(400, "missing query parameter network (DELETE /v1/blocks?network=N)");
  }
  auto network = network_field(network_text);
  if (auto* refused = std::get_if<AdminResponse>(&network)) return std::move(*refused);
  const auto removed = balancer.unblock(std::get<config::Network>(network), listener);
  if (removed.empty()) {
    return error_response(404, fmt::format("no block of {}{}", network_text,
                                           listener ? " on listener " + *listener : std::string()));
  }
  return AdminResponse{200, json::object{{"unblocked", block_array(removed)}}, {}, true};
}

// A handler that changes the balancer: refused while it stops, since a reload or a route would
// open listeners that the stop has just closed.
AdminHandler change(Balancer& balancer, AdminHandler apply) {
  return [&balancer, apply = std::move(apply)](const AdminRequest& request) {
    if (balancer.stopping()) {
      return error_response(503, "the balancer is stopping; no changes are taken");
    }
    return apply(request);
  };
}

}  // namespace

AdminRouteTable admin_routes(Balancer& balancer) {
  AdminRouteTable table;
  Balancer& b = balancer;
  table.add("GET", "/v1/status", [&b](const AdminRequest&) { return get_status(b); });
  table.add("POST", "/v1/reload", change(b, [&b](const AdminRequest&) { return post_reload(b); }));
  table.add("PUT", "/v1/clusters/{cluster}/nodes/{node}/state",
            change(b, [&b](const AdminRequest& r) {
              return put_node_state(b, r.params.at("cluster"), r.params.at("node"), r.body);
            }));
  table.add("PUT", "/v1/listeners/{listener}/route", change(b, [&b](const AdminRequest& r) {
              return route_listener(b, r.params.at("listener"), false, r.body);
            }));
  table.add("DELETE", "/v1/listeners/{listener}/route", change(b, [&b](const AdminRequest& r) {
              return route_listener(b, r.params.at("listener"), true, r.body);
            }));
  table.add("PUT", "/v1/affinity",
            change(b, [&b](const AdminRequest& r) { return put_affinity(b, r.body); }));
  table.add("DELETE", "/v1/affinity",
            change(b, [&b](const AdminRequest& r) { return delete_affinity(b, r.target); }));
  table.add("GET", "/v1/blocks", [&b](const AdminRequest&) {
    return AdminResponse{200, json::object{{"blocks", block_array(b.blocks())}}, {}};
  });
  table.add("PUT", "/v1/blocks",
            change(b, [&b](const AdminRequest& r) { return put_block(b, r.body); }));
  table.add("DELETE", "/v1/blocks",
            change(b, [&b](const AdminRequest& r) { return delete_block(b, r.target); }));
  return table;
}

AdminResponse handle_admin_request(Balancer& balancer, std::string_view method,
                                   std::string_view target, std::string_view body) {
  try {
    return admin_routes(balancer).dispatch(method, target, body);
  } catch (const std::exception& e) {
    spdlog::error("admin: {} {} failed: {}", method, target, e.what());
    return error_response(500, fmt::format("internal error: {}", e.what()));
  }
}

}  // namespace pb::control
