#include "protobalance/control/admin_server.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <initializer_list>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "protobalance/affinity/client_key.hpp"
#include "protobalance/config/utc_time.hpp"
#include "protobalance/control/runtime.hpp"
#include "protobalance/version.hpp"

namespace pb::control {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
namespace fs = std::filesystem;
using local = asio::local::stream_protocol;
using Stream = beast::basic_stream<local, asio::any_io_executor, beast::unlimited_rate_policy>;

namespace {

constexpr auto kUseTuple = asio::as_tuple(asio::use_awaitable);
// A request must arrive whole within this (also the idle time allowed between keep-alive
// requests): pbadmin sends at once, and a stuck client must not hold a connection for ever.
constexpr std::chrono::seconds kReadTimeout{10};
constexpr std::chrono::seconds kWriteTimeout{10};
// After an error that ends the connection, unread input is drained this long (at most
// kLingerBytes) so that closing does not reset the connection before the client read the answer.
constexpr std::chrono::seconds kLingerTime{1};
constexpr std::size_t kLingerBytes = 1024 * 1024;

// ---- request handling ----

AdminResponse error_response(unsigned status, std::string message) {
  return AdminResponse{status, json::object{{"error", std::move(message)}}, {}};
}

AdminResponse method_not_allowed(std::string_view method, std::string_view path,
                                 std::string allow) {
  AdminResponse response = error_response(
      405, fmt::format("{} is not allowed on {}; allowed: {}", method, path, allow));
  response.allow = std::move(allow);
  return response;
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes %XX escapes (and '+' as a space in queries). Returns nullopt for a broken escape.
std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      const int high = hex_digit(text[i + 1]);
      const int low = hex_digit(text[i + 2]);
      if (high < 0 || low < 0) return std::nullopt;
      out.push_back(static_cast<char>(high * 16 + low));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// A parsed request target: decoded path segments and query parameters.
struct Target {
  std::string path;  // as sent, without the query, for messages
  std::vector<std::string> segments;
  std::vector<std::pair<std::string, std::string>> query;
};

std::optional<Target> parse_target(std::string_view target) {
  Target parsed;
  const std::size_t question = target.find('?');
  const std::string_view path = target.substr(0, question);
  if (path.empty() || path.front() != '/') return std::nullopt;
  parsed.path = std::string(path);
  std::string_view rest = path.substr(1);
  while (!rest.empty()) {
    const std::size_t slash = rest.find('/');
    auto segment = percent_decode(rest.substr(0, slash), false);
    if (!segment) return std::nullopt;
    // A trailing slash (and doubled ones) name the same resource.
    if (!segment->empty()) parsed.segments.push_back(std::move(*segment));
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  if (question != std::string_view::npos) {
    std::string_view query = target.substr(question + 1);
    while (!query.empty()) {
      const std::size_t amp = query.find('&');
      const std::string_view pair = query.substr(0, amp);
      if (!pair.empty()) {
        const std::size_t eq = pair.find('=');
        auto key = percent_decode(pair.substr(0, eq), true);
        auto value = percent_decode(
            eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1), true);
        if (!key || !value) return std::nullopt;
        parsed.query.emplace_back(std::move(*key), std::move(*value));
      }
      if (amp == std::string_view::npos) break;
      query.remove_prefix(amp + 1);
    }
  }
  return parsed;
}

// A JSON request body: an object whose members are all known strings. Missing required members,
// other types and unknown members are refused with a message naming them.
struct Fields {
  std::map<std::string, std::string, std::less<>> values;
};

std::variant<Fields, AdminResponse> parse_fields(std::string_view body,
                                                std::initializer_list<std::string_view> required,
                                                std::initializer_list<std::string_view> optional) {
  boost::system::error_code ec;
  json::value value = json::parse(body, ec);
  if (ec) return error_response(400, fmt::format("malformed JSON body: {}", ec.message()));
  const json::object* object = value.if_object();
  if (object == nullptr) {
    return error_response(400, fmt::format("the body must be a JSON object, got {}",
                                           std::string_view(json::to_string(value.kind()))));
  }
  const auto expected = [&] {
    std::string text;
    for (const auto list : {required, optional}) {
      for (const std::string_view name : list) text += (text.empty() ? "\"" : ", \"") + std::string(name) + "\"";
    }
    return text;
  };
  Fields fields;
  for (const auto& [key, member] : *object) {
    const bool known =
        std::find(required.begin(), required.end(), std::string_view(key)) != required.end() ||
        std::find(optional.begin(), optional.end(), std::string_view(key)) != optional.end();
    if (!known) {
      return error_response(400, fmt::format("unknown field \"{}\"; expected {}",
                                             std::string_view(key), expected()));
    }
    const json::string* text = member.if_string();
    if (text == nullptr) {
      return error_response(400, fmt::format("field \"{}\" must be a string, got {}",
                                             std::string_view(key),
                                             std::string_view(json::to_string(member.kind()))));
    }
    fields.values.emplace(std::string_view(key), std::string_view(*text));
  }
  for (const std::string_view name : required) {
    if (!fields.values.contains(name)) {
      return error_response(400, fmt::format("missing field \"{}\"; expected {}", name, expected()));
    }
  }
  return fields;
}

std::string format_endpoint(const boost::asio::ip::tcp::endpoint& ep) {
  if (ep.address().is_v6()) return fmt::format("[{}]:{}", ep.address().to_string(), ep.port());
  return fmt::format("{}:{}", ep.address().to_string(), ep.port());
}

std::int64_t steady_now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// When a node became unavailable, in wall-clock time (the runtime keeps steady-clock time,
// which has no calendar); null while it is up.
json::value since_value(std::int64_t since_ns) {
  if (since_ns == 0) return nullptr;
  const auto age = std::chrono::nanoseconds(std::max<std::int64_t>(0, steady_now_ns() - since_ns));
  const auto wall = std::chrono::system_clock::now() -
                    std::chrono::duration_cast<std::chrono::system_clock::duration>(age);
  return json::value(config::format_utc(
      std::chrono::duration_cast<std::chrono::seconds>(wall.time_since_epoch()).count()));
}

// Remaining slow-start ramp of a node, in ms, or null when it is at full weight.
json::value slow_start_value(const balance::Cluster& cluster, const balance::NodeRuntime& rt,
                             std::int64_t now) {
  const auto ramp = std::chrono::duration_cast<std::chrono::nanoseconds>(
                        cluster.config().slow_start).count();
  const std::int64_t since = rt.eligible_since_ns.load(std::memory_order_relaxed);
  if (ramp <= 0 || since == 0 || now - since >= ramp) return nullptr;
  return json::object{{"remaining_ms", (ramp - (now - since)) / 1'000'000}};
}

// [cluster.health] state of a node for status: null without checks.
json::value check_value(const balance::Cluster& cluster, const balance::NodeRuntime& rt) {
  if (!cluster.config().health) return nullptr;
  const bool checked = rt.last_check_ns.load(std::memory_order_relaxed) != 0;
  return json::object{
      {"down", rt.check_down.load(std::memory_order_relaxed)},
      {"last_result", checked ? json::value(balance::to_string(rt.last_check.load(
                                    std::memory_order_relaxed)))
                              : json::value(nullptr)},
      {"last_change", since_value(rt.check_changed_ns.load(std::memory_order_relaxed))},
      {"passed_in_row", rt.checks_passed_in_row.load(std::memory_order_relaxed)},
      {"failed_in_row", rt.checks_failed_in_row.load(std::memory_order_relaxed)}};
}

// [cluster.agent] state of a node for status: null without an agent.
json::value agent_value(const balance::Cluster& cluster, const balance::NodeRuntime& rt) {
  if (!cluster.config().agent) return nullptr;
  json::object values;
  std::int64_t reported_ns = 0;
  {
    std::lock_guard lock(rt.agent_mutex);
    for (const auto& v : rt.agent_values) values[v.name] = v.value;
    reported_ns = rt.agent_values_ns;
  }
  return json::object{
      {"state", config::to_string(rt.agent_state.load(std::memory_order_relaxed))},
      {"down", rt.agent_down.load(std::memory_order_relaxed)},
      {"weight_percent", rt.agent_weight_percent.load(std::memory_order_relaxed)},
      {"values", std::move(values)},
      {"reported", since_value(reported_ns)}};
}

std::string names_of(const balance::Cluster& cluster) {
  std::string text;
  for (const auto& node : cluster.nodes()) text += (text.empty() ? "" : ", ") + node.name;
  return text;
}

std::string cluster_names(const Runtime::Snapshot& snapshot) {
  std::string text;
  for (const auto& [name, cluster] : snapshot.clusters) text += (text.empty() ? "" : ", ") + name;
  return text;
}

// The cluster named `name`, or the 404 that says which clusters there are.
std::variant<const balance::Cluster*, AdminResponse> find_cluster(const Runtime::Snapshot& snapshot,
                                                                  const std::string& name) {
  const auto cluster = snapshot.clusters.find(name);
  if (cluster == snapshot.clusters.end()) {
    return error_response(404, fmt::format("no cluster named {}; clusters: {}", name,
                                           cluster_names(snapshot)));
  }
  return cluster->second.get();
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

AdminResponse put_node_state(Runtime& runtime, const std::string& cluster_name,
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
  const auto snapshot = runtime.snapshot();
  auto found = find_cluster(*snapshot, cluster_name);
  if (auto* refused = std::get_if<AdminResponse>(&found)) return std::move(*refused);
  const balance::Cluster& cluster = *std::get<const balance::Cluster*>(found);
  const std::int32_t index = cluster.find(node_name);
  if (index < 0) {
    return error_response(404, fmt::format("cluster {} has no node named {}; nodes: {}",
                                           cluster_name, node_name, names_of(cluster)));
  }
  const auto previous = cluster.nodes()[static_cast<std::uint32_t>(index)]
                            .runtime->admin_state.load(std::memory_order_relaxed);
  if (!runtime.set_node_state(cluster_name, node_name, *state)) {
    return error_response(404, fmt::format("cluster {} has no node named {}", cluster_name, node_name));
  }
  return AdminResponse{200,
                       json::object{{"cluster", cluster_name},
                                    {"node", node_name},
                                    {"state", config::to_string(*state)},
                                    {"previous", config::to_string(previous)}},
                       {}};
}

AdminResponse post_reload(Runtime& runtime) {
  const ReloadResult result = runtime.reload();
  json::array changes;
  for (const auto& change : result.changes) changes.emplace_back(change);
  json::array errors;
  for (const auto& error : result.errors) errors.emplace_back(error);
  json::object body{{"ok", result.ok}, {"changes", std::move(changes)}, {"errors", errors}};
  if (!result.ok) {
    body["error"] = fmt::format("reload refused ({} error{}); the running configuration is unchanged",
                                result.errors.size(), result.errors.size() == 1 ? "" : "s");
    return AdminResponse{422, std::move(body), {}};
  }
  return AdminResponse{200, std::move(body), {}};
}

json::object route_body(Runtime& runtime, const std::string& listener) {
  const auto snapshot = runtime.snapshot();
  std::string configured;
  for (const auto& l : snapshot->config->listeners) {
    if (l.name == listener) configured = l.cluster;
  }
  const auto route = snapshot->routes.find(listener);
  const std::string current = route == snapshot->routes.end() ? configured : route->second;
  return json::object{{"listener", listener},
                      {"cluster", current},
                      {"configured_cluster", configured},
                      {"routed", current != configured}};
}

AdminResponse route_listener(Runtime& runtime, const std::string& listener, bool reset,
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
  const std::string problem = runtime.route(listener, cluster);
  if (!problem.empty()) return error_response(404, problem);
  return AdminResponse{200, route_body(runtime, listener), {}};
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

AdminResponse put_affinity(Runtime& runtime, std::string_view body) {
  auto parsed = parse_fields(body, {"cluster", "client", "node"}, {});
  if (auto* refused = std::get_if<AdminResponse>(&parsed)) return std::move(*refused);
  const auto& values = std::get<Fields>(parsed).values;
  const std::string& cluster_name = values.at("cluster");
  const std::string& client = values.at("client");
  const std::string& node_name = values.at("node");

  auto parsed_client = client_field(client);
  if (auto* refused = std::get_if<AdminResponse>(&parsed_client)) return std::move(*refused);
  const affinity::ClientKey* given = &std::get<affinity::ClientKey>(parsed_client);
  const auto snapshot = runtime.snapshot();
  auto found = find_cluster(*snapshot, cluster_name);
  if (auto* refused = std::get_if<AdminResponse>(&found)) return std::move(*refused);
  const balance::Cluster& cluster = *std::get<const balance::Cluster*>(found);
  const config::ClusterConfig& cfg = cluster.config();
  if (!cfg.affinity.enabled) {
    return error_response(409, fmt::format("cluster {} does not use client affinity ([cluster.affinity] "
                                           "enabled = false); a pin would never be used",
                                           cluster_name));
  }
  if (cluster.find(node_name) < 0) {
    return error_response(404, fmt::format("cluster {} has no node named {}; nodes: {}",
                                           cluster_name, node_name, names_of(cluster)));
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
  const auto previous = runtime.affinity().lookup(cluster_name, key, now, cfg.affinity.ttl);
  runtime.affinity().pin(cluster_name, key, node_name, now);
  spdlog::info("affinity: client {} pinned to {}/{}{}", key.to_string(), cluster_name, node_name,
               previous ? fmt::format(" (was {})", *previous) : std::string());
  return AdminResponse{200,
                       json::object{{"cluster", cluster_name},
                                    {"client", key.to_string()},
                                    {"node", node_name},
                                    {"previous", previous ? json::value(*previous) : nullptr}},
                       {}};
}

AdminResponse delete_affinity(Runtime& runtime, const Target& target) {
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
  const auto snapshot = runtime.snapshot();
  std::vector<const config::ClusterConfig*> clusters;
  if (!cluster_name.empty()) {
    auto found = find_cluster(*snapshot, cluster_name);
    if (auto* refused = std::get_if<AdminResponse>(&found)) return std::move(*refused);
    clusters.push_back(&std::get<const balance::Cluster*>(found)->config());
  } else {
    for (const auto& cfg : snapshot->config->clusters) {
      if (cfg.affinity.enabled) clusters.push_back(&cfg);
    }
  }
  // Every entry the named client or network overlaps: "192.0.2.7" forgets the /24 entry that
  // holds it in a cluster keyed by /24, "192.0.2.0/24" forgets each /32 entry in it.
  json::array forgotten;
  for (const config::ClusterConfig* cfg : clusters) {
    const affinity::ClientKey key = key_in_cluster(*given, cfg->affinity);
    bool any = false;
    for (const auto& row : runtime.affinity().overlapping(cfg->name, key)) {
      const auto entry = affinity::parse_client(row.client);
      if (!entry || !entry->overlaps(key)) continue;
      if (runtime.affinity().forget(cfg->name, *entry)) {
        any = true;
        forgotten.push_back(
            json::object{{"cluster", cfg->name}, {"client", entry->to_string()}, {"node", row.node}});
        spdlog::info("affinity: client {} forgotten in cluster {} (was on {})", entry->to_string(),
                     cfg->name, row.node);
      }
    }
    // The database may hold a row that the map no longer does (expired): it goes too.
    if (!any) runtime.affinity().forget(cfg->name, key);
  }
  if (forgotten.empty()) {
    std::string where = cluster_name.empty() ? std::string("any cluster with affinity")
                                             : "cluster " + cluster_name;
    return error_response(404, fmt::format("no affinity entry for {} in {}", client, where));
  }
  return AdminResponse{200, json::object{{"forgotten", std::move(forgotten)}}, {}};
}

AdminResponse dispatch(Runtime& runtime, std::string_view method, std::string_view raw_target,
                       std::string_view body) {
  const auto target = parse_target(raw_target);
  if (!target) {
    return error_response(400, fmt::format("malformed request target '{}'", raw_target));
  }
  const auto& s = target->segments;
  const bool is_get = method == "GET";
  const auto change = [&](auto&& apply) -> AdminResponse {
    // A reload or a route would open listeners that the stop has just closed.
    if (runtime.stopping()) {
      return error_response(503, "the balancer is stopping; no changes are taken");
    }
    return apply();
  };
  if (s.size() == 2 && s[0] == "v1" && s[1] == "status") {
    if (!is_get) return method_not_allowed(method, target->path, "GET");
    return AdminResponse{200, admin_status(runtime), {}};
  }
  if (s.size() == 2 && s[0] == "v1" && s[1] == "reload") {
    if (method != "POST") return method_not_allowed(method, target->path, "POST");
    return change([&] { return post_reload(runtime); });
  }
  if (s.size() == 6 && s[0] == "v1" && s[1] == "clusters" && s[3] == "nodes" && s[5] == "state") {
    if (method != "PUT") return method_not_allowed(method, target->path, "PUT");
    return change([&] { return put_node_state(runtime, s[2], s[4], body); });
  }
  if (s.size() == 4 && s[0] == "v1" && s[1] == "listeners" && s[3] == "route") {
    if (method != "PUT" && method != "DELETE") {
      return method_not_allowed(method, target->path, "PUT, DELETE");
    }
    return change([&] { return route_listener(runtime, s[2], method == "DELETE", body); });
  }
  if (s.size() == 2 && s[0] == "v1" && s[1] == "affinity") {
    if (method == "PUT") return change([&] { return put_affinity(runtime, body); });
    if (method == "DELETE") return change([&] { return delete_affinity(runtime, *target); });
    return method_not_allowed(method, target->path, "PUT, DELETE");
  }
  return error_response(
      404, fmt::format("no resource {}; resources: /v1/status, /v1/reload, "
                       "/v1/clusters/CLUSTER/nodes/NODE/state, /v1/listeners/LISTENER/route, "
                       "/v1/affinity",
                       target->path));
}

// A listener's [[listener.route]] entries in order: {"sni": [...], "cluster": "..."}.
json::array sni_routes_json(const config::ListenerConfig& listener) {
  json::array routes;
  for (const auto& route : listener.routes) {
    json::array names;
    for (const auto& name : route.sni) names.emplace_back(name.text);
    routes.push_back(json::object{{"sni", std::move(names)}, {"cluster", route.cluster}});
  }
  return routes;
}

}  // namespace

boost::json::object admin_status(Runtime& runtime) {
  const auto snapshot = runtime.snapshot();
  const auto endpoints = runtime.listener_endpoints();
  const auto stats = runtime.listener_stats();
  json::array listeners;
  for (const auto& l : snapshot->config->listeners) {
    const auto bound = endpoints.find(l.name);
    const auto route = snapshot->routes.find(l.name);
    const auto counters = stats.find(l.name);
    const std::string cluster = route == snapshot->routes.end() ? l.cluster : route->second;
    const bool have_counters = counters != stats.end() && counters->second;
    listeners.push_back(json::object{
        {"name", l.name},
        {"address", bound == endpoints.end() ? l.address : format_endpoint(bound->second)},
        {"cluster", cluster},
        {"configured_cluster", l.cluster},
        {"routed", cluster != l.cluster},
        {"active", have_counters ? counters->second->active.load(std::memory_order_relaxed) : 0},
        {"connections",
         have_counters ? counters->second->connections.load(std::memory_order_relaxed) : 0},
        {"sni_routes", sni_routes_json(l)}});
  }
  json::array clusters;
  for (const auto& cfg : snapshot->config->clusters) {
    const auto found = snapshot->clusters.find(cfg.name);
    if (found == snapshot->clusters.end()) continue;
    const balance::Cluster& cluster = *found->second;
    json::array nodes;
    const std::int64_t now = steady_now_ns();
    for (std::uint32_t index = 0; index < cluster.nodes().size(); ++index) {
      const auto& node = cluster.nodes()[index];
      const balance::NodeRuntime& rt = *node.runtime;
      const std::int64_t since = rt.unavailable_since_ns.load(std::memory_order_relaxed);
      json::value fallover = nullptr;
      if (node.fallover >= 0) fallover = cluster.nodes()[static_cast<std::uint32_t>(node.fallover)].name;
      nodes.push_back(json::object{
          {"name", node.name},
          {"address", node.address},
          {"state", config::to_string(rt.admin_state.load(std::memory_order_relaxed))},
          {"up", since == 0},
          {"since", since_value(since)},
          {"active", rt.active.load(std::memory_order_relaxed)},
          {"total", rt.total.load(std::memory_order_relaxed)},
          {"failures", rt.failures_total()},
          {"failovers", rt.failovers.load(std::memory_order_relaxed)},
          {"bytes_to_node", rt.bytes_to_node.load(std::memory_order_relaxed)},
          {"bytes_to_client", rt.bytes_to_client.load(std::memory_order_relaxed)},
          {"load_factor", node.load_factor},
          {"max_connections", node.max_connections},
          {"tier", node.tier},
          {"fallover", std::move(fallover)},
          // Issue 12: the state in force (operator's or agent's, the more restrictive), the
          // load factor the algorithm uses now (agent percent, slow start), checks and agent.
          {"effective_state", config::to_string(rt.effective_state())},
          {"effective_load_factor", cluster.effective_load_factor(index, now)},
          {"slow_start", slow_start_value(cluster, rt, now)},
          {"check", check_value(cluster, rt)},
          {"agent", agent_value(cluster, rt)}});
    }
    clusters.push_back(json::object{{"name", cfg.name},
                                    {"algorithm", cfg.algorithm},
                                    {"affinity", cfg.affinity.enabled},
                                    {"nodes", std::move(nodes)}});
  }
  return json::object{{"listeners", std::move(listeners)},
                      {"clusters", std::move(clusters)},
                      {"affinity_entries", runtime.affinity().size()}};
}

AdminResponse handle_admin_request(Runtime& runtime, std::string_view method,
                                   std::string_view target, std::string_view body) {
  try {
    return dispatch(runtime, method, target, body);
  } catch (const std::exception& e) {
    spdlog::error("admin: {} {} failed: {}", method, target, e.what());
    return error_response(500, fmt::format("internal error: {}", e.what()));
  }
}

// ---- the server ----

struct AdminServer::State {
  explicit State(asio::io_context& context) : acceptor(context) {}
  local::acceptor acceptor;
  // Open connections, to close them at stop(). Touched on the control thread only.
  std::unordered_set<Stream*> connections;
  bool stopped = false;
};

namespace {

http::response<http::string_body> make_response(const AdminResponse& answer, unsigned version,
                                                bool keep_alive) {
  http::response<http::string_body> response{static_cast<http::status>(answer.status), version};
  response.set(http::field::server, std::string("protobalance/") + pb::kVersion);
  response.set(http::field::content_type, "application/json");
  response.set(http::field::cache_control, "no-store");
  if (!answer.allow.empty()) response.set(http::field::allow, answer.allow);
  response.keep_alive(keep_alive);
  response.body() = json::serialize(answer.body) + "\n";
  response.prepare_payload();
  return response;
}

// Ends a connection after an answer that the client may not have finished sending for: stop
// writing, then read and discard what is still coming for a moment, so that the kernel does not
// reset the connection (and drop our answer) on close.
asio::awaitable<void> linger_close(Stream& stream) {
  boost::system::error_code ignored;
  stream.socket().shutdown(local::socket::shutdown_send, ignored);
  stream.expires_after(kLingerTime);
  std::array<char, 4096> sink{};
  std::size_t drained = 0;
  while (drained < kLingerBytes) {
    auto [ec, n] = co_await stream.async_read_some(asio::buffer(sink), kUseTuple);
    if (ec) break;
    drained += n;
  }
  stream.close();
}

// Serves one connection: requests in order (keep-alive), until the client closes, a timeout,
// an error that leaves the stream unusable, or stop().
asio::awaitable<void> serve(std::shared_ptr<AdminServer::State> state, Runtime& runtime,
                            local::socket socket) {
  Stream stream(std::move(socket));
  state->connections.insert(&stream);
  struct Forget {
    AdminServer::State& state;
    Stream* stream;
    ~Forget() { state.connections.erase(stream); }
  } forget{*state, &stream};

  beast::flat_buffer buffer;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(kAdminHeaderLimit));
    parser.body_limit(kAdminBodyLimit);
    stream.expires_after(kReadTimeout);
    auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, kUseTuple);
    if (!ec && beast::iequals(parser.get()[http::field::expect], "100-continue")) {
      // curl and others wait for this before sending a body of more than 1 KiB.
      http::response<http::empty_body> go_on{http::status::continue_, parser.get().version()};
      auto [write_ec, written] = co_await http::async_write(stream, go_on, kUseTuple);
      ec = write_ec;
    }
    if (!ec && !parser.is_done()) {
      std::tie(ec, n) = co_await http::async_read(stream, buffer, parser, kUseTuple);
    }
    if (ec) {
      if (state->stopped || ec == http::error::end_of_stream || ec == beast::error::timeout ||
          ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
          ec == asio::error::eof || ec == http::error::partial_message) {
        co_return;  // the client went away or stayed silent: nothing to answer
      }
      AdminResponse answer;
      if (ec == http::error::body_limit) {
        answer = error_response(413, fmt::format("request body too large; the limit is {} bytes",
                                                 kAdminBodyLimit));
      } else if (ec == http::error::header_limit) {
        answer = error_response(431, fmt::format("request header too large; the limit is {} bytes",
                                                 kAdminHeaderLimit));
      } else {
        answer = error_response(400, fmt::format("malformed HTTP request: {}", ec.message()));
      }
      spdlog::debug("admin: refused a request: {}", ec.message());
      auto response = make_response(answer, 11, false);
      stream.expires_after(kWriteTimeout);
      auto [write_ec, written] = co_await http::async_write(stream, response, kUseTuple);
      if (!write_ec) co_await linger_close(stream);
      co_return;
    }

    const auto& request = parser.get();
    const std::string method(request.method_string());
    const std::string target(request.target());
    const AdminResponse answer = handle_admin_request(runtime, method, target, request.body());
    spdlog::debug("admin: {} {} -> {}", method, target, answer.status);
    if (state->stopped) co_return;  // the request stopped the server (cannot happen today)
    const bool keep_alive = request.keep_alive();
    auto response = make_response(answer, request.version(), keep_alive);
    stream.expires_after(kWriteTimeout);
    auto [write_ec, written] = co_await http::async_write(stream, response, kUseTuple);
    if (write_ec) co_return;
    if (!keep_alive) {
      boost::system::error_code ignored;
      stream.socket().shutdown(local::socket::shutdown_send, ignored);
      co_return;
    }
  }
}

asio::awaitable<void> accept_loop(std::shared_ptr<AdminServer::State> state, Runtime& runtime) {
  auto executor = co_await asio::this_coro::executor;
  for (;;) {
    auto [ec, socket] = co_await state->acceptor.async_accept(kUseTuple);
    if (state->stopped || ec == asio::error::operation_aborted) co_return;
    if (ec) {
      // Out of descriptors, most likely: wait rather than spin; the next accept may work.
      spdlog::warn("admin: accept failed: {}", ec.message());
      asio::steady_timer pause(executor, std::chrono::milliseconds(100));
      co_await pause.async_wait(kUseTuple);
      continue;
    }
    asio::co_spawn(executor, serve(state, runtime, std::move(socket)), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& x) {
        spdlog::warn("admin: connection ended by an error: {}", x.what());
      }
    });
  }
}

[[noreturn]] void fail(const fs::path& path, const std::string& what) {
  throw std::runtime_error(fmt::format("admin socket {}: {}", path.string(), what));
}

// A socket file found at start: refuses when it is not a socket or someone answers on it (a
// daemon already running with this state_dir), removes it when it is a leftover.
void clear_stale_socket(asio::io_context& context, const fs::path& path) {
  struct stat st{};
  if (::lstat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return;
    fail(path, fmt::format("cannot inspect it: {}", std::strerror(errno)));
  }
  if (!S_ISSOCK(st.st_mode)) {
    fail(path, "exists and is not a socket; remove it or set another [admin] socket");
  }
  local::socket probe(context);
  boost::system::error_code ec;
  probe.open(local(), ec);
  if (!ec) probe.non_blocking(true, ec);
  if (!ec) probe.connect(local::endpoint(path.string()), ec);
  // A full backlog (would_block) also means that somebody listens.
  if (!ec || ec == asio::error::would_block || ec == asio::error::in_progress) {
    fail(path, "another process answers on it (is a balancer already running with this "
               "state_dir?); refusing to start");
  }
  if (ec != asio::error::connection_refused) {
    fail(path, fmt::format("cannot tell whether it is in use: {}", ec.message()));
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    fail(path, fmt::format("cannot remove the stale socket: {}", std::strerror(errno)));
  }
  spdlog::info("admin: replaced the stale socket {} (left by a balancer that is gone)", path.string());
}

}  // namespace

AdminServer::AdminServer(Runtime& runtime, fs::path socket_path)
    : path_(std::move(socket_path)), state_(std::make_shared<State>(runtime.control_context())) {
  asio::io_context& context = runtime.control_context();
  std::error_code fs_ec;
  fs::create_directories(path_.parent_path(), fs_ec);
  if (fs_ec) fail(path_, fmt::format("cannot create its folder: {}", fs_ec.message()));
  clear_stale_socket(context, path_);

  boost::system::error_code ec;
  local::acceptor& acceptor = state_->acceptor;
  acceptor.open(local(), ec);
  if (!ec) acceptor.bind(local::endpoint(path_.string()), ec);
  if (ec) fail(path_, fmt::format("cannot bind: {}", ec.message()));
  // Owner only, set before listen(): until then every connect is refused, so there is no
  // moment at which another user could connect.
  struct stat st{};
  if (::chmod(path_.c_str(), S_IRUSR | S_IWUSR) != 0 || ::lstat(path_.c_str(), &st) != 0 ||
      !S_ISSOCK(st.st_mode) || (st.st_mode & 0777) != 0600) {
    const std::string reason = std::strerror(errno);
    acceptor.close(ec);
    ::unlink(path_.c_str());
    fail(path_, fmt::format("cannot restrict it to its owner (mode 0600): {}", reason));
  }
  device_ = st.st_dev;
  inode_ = st.st_ino;
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    const std::string reason = ec.message();
    acceptor.close(ec);
    ::unlink(path_.c_str());
    fail(path_, fmt::format("cannot listen: {}", reason));
  }
  asio::co_spawn(context, accept_loop(state_, runtime), [](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      spdlog::error("admin: the accept loop ended by an error: {}", x.what());
    }
  });
  spdlog::info("admin API on {}", path_.string());
}

AdminServer::~AdminServer() { stop(); }

std::unique_ptr<AdminServer> AdminServer::start(Runtime& runtime, const config::Config& cfg) {
  try {
    return std::make_unique<AdminServer>(runtime, cfg.admin.socket);
  } catch (const std::runtime_error& e) {
    const fs::path& dir = cfg.service.state_dir;
    const fs::path inside = cfg.admin.socket.parent_path().lexically_relative(dir);
    const bool in_state_dir = !inside.empty() && *inside.begin() != "..";
    std::error_code ec;
    const bool usable = fs::is_directory(dir, ec) && ::access(dir.c_str(), W_OK | X_OK) == 0;
    if (!in_state_dir || usable) throw;
    spdlog::error("{}; state_dir {} cannot be used, so the balancer runs without its admin API "
                  "(pbadmin cannot reach it; SIGHUP still reloads)",
                  e.what(), dir.string());
    return nullptr;
  }
}

void AdminServer::stop() {
  if (stopped_) return;
  stopped_ = true;
  state_->stopped = true;
  boost::system::error_code ignored;
  state_->acceptor.close(ignored);
  for (Stream* stream : state_->connections) stream->socket().close(ignored);
  struct stat st{};
  if (::lstat(path_.c_str(), &st) == 0 && st.st_dev == device_ && st.st_ino == inode_) {
    ::unlink(path_.c_str());
  }
}

}  // namespace pb::control
