#include "protobalance/config/config_diff.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <string_view>

#include "protobalance/config/duration.hpp"

namespace pb::config {

bool node_health_differs(const ClusterConfig& a, const ClusterConfig& b) {
  if (a.slow_start != b.slow_start || a.health.has_value() != b.health.has_value() ||
      a.agent.has_value() != b.agent.has_value()) {
    return true;
  }
  if (a.health) {
    const auto& x = *a.health;
    const auto& y = *b.health;
    if (x.interval != y.interval || x.timeout != y.timeout || x.rise != y.rise ||
        x.fall != y.fall || x.send != y.send || x.expect != y.expect || x.port != y.port) {
      return true;
    }
  }
  return a.agent && (a.agent->port != b.agent->port || a.agent->interval != b.agent->interval ||
                     a.agent->timeout != b.agent->timeout);
}

namespace {

// Whether the guards of a listener differ between two versions (positions in the file aside).
bool guards_differ(const ListenerConfig& a, const ListenerConfig& b) {
  const auto texts_differ = [](const std::vector<PlacedText>& x, const std::vector<PlacedText>& y) {
    return !std::equal(x.begin(), x.end(), y.begin(), y.end(),
                       [](const auto& p, const auto& q) { return p.text == q.text; });
  };
  if (texts_differ(a.allow, b.allow) || texts_differ(a.deny, b.deny) ||
      a.max_client_connections != b.max_client_connections ||
      a.max_client_rate.text != b.max_client_rate.text ||
      a.validate.has_value() != b.validate.has_value() || a.routes.size() != b.routes.size()) {
    return true;
  }
  if (a.validate && (a.validate->timeout != b.validate->timeout ||
                     a.validate->max_bytes != b.validate->max_bytes ||
                     a.validate->expect.text != b.validate->expect.text)) {
    return true;
  }
  for (std::size_t i = 0; i < a.routes.size(); ++i) {
    if (a.routes[i].cluster != b.routes[i].cluster || texts_differ(a.routes[i].sni, b.routes[i].sni)) {
      return true;
    }
  }
  return false;
}

}  // namespace

std::vector<std::string> describe_changes(const Config& before, const Config& after) {
  std::vector<std::string> changes;
  for (const auto& l : after.listeners) {
    auto it = std::find_if(before.listeners.begin(), before.listeners.end(),
                           [&](const auto& o) { return o.name == l.name; });
    if (it == before.listeners.end()) {
      changes.push_back(fmt::format("listener {} added on {}", l.name, l.address));
    } else if (it->endpoint != l.endpoint) {
      changes.push_back(
          fmt::format("listener {} moved from {} to {}", l.name, it->address, l.address));
    } else if (it->cluster != l.cluster) {
      changes.push_back(fmt::format("listener {} now routes to cluster {}", l.name, l.cluster));
    }
    if (it != before.listeners.end() && it->endpoint == l.endpoint &&
        (it->accept_proxy != l.accept_proxy || it->proxy_timeout != l.proxy_timeout ||
         it->trusted_proxies.size() != l.trusted_proxies.size() ||
         it->trusted_proxies != l.trusted_proxies)) {
      changes.push_back(fmt::format("listener {}: PROXY protocol in {} for new connections", l.name,
                                    l.accept_proxy ? "on" : "off"));
    }
    if (it != before.listeners.end() && it->endpoint == l.endpoint && guards_differ(*it, l)) {
      changes.push_back(fmt::format("listener {}: guards changed for new connections", l.name));
    }
  }
  for (const auto& l : before.listeners) {
    if (std::none_of(after.listeners.begin(), after.listeners.end(),
                     [&](const auto& o) { return o.name == l.name; })) {
      changes.push_back(fmt::format("listener {} removed", l.name));
    }
  }
  for (const auto& c : after.clusters) {
    const ClusterConfig* old = before.find_cluster(c.name);
    if (old == nullptr) {
      changes.push_back(fmt::format("cluster {} added ({} nodes)", c.name, c.nodes.size()));
      continue;
    }
    if (old->algorithm != c.algorithm || old->connect_timeout != c.connect_timeout ||
        old->retry_interval != c.retry_interval || old->idle_timeout != c.idle_timeout ||
        old->load_rating != c.load_rating || old->hash_key != c.hash_key ||
        old->half_close != c.half_close) {
      changes.push_back(fmt::format("cluster {} settings changed", c.name));
    }
    if (node_health_differs(*old, c)) {
      changes.push_back(
          fmt::format("cluster {} health checks, agent or slow start changed", c.name));
    }
    const AffinityConfig& oa = old->affinity;
    const AffinityConfig& na = c.affinity;
    if (oa.enabled != na.enabled || oa.ttl != na.ttl || oa.prefix_v4 != na.prefix_v4 ||
        oa.prefix_v6 != na.prefix_v6) {
      changes.push_back(fmt::format("cluster {} affinity {}", c.name,
                                    na.enabled ? "settings changed" : "switched off"));
    }
    for (const auto& n : c.nodes) {
      const NodeConfig* o = old->find_node(n.name);
      if (o == nullptr) {
        changes.push_back(fmt::format("node {}/{} added", c.name, n.name));
      } else if (o->endpoint != n.endpoint || o->load_factor != n.load_factor ||
                 o->max_connections != n.max_connections || o->fallover != n.fallover ||
                 o->tier != n.tier) {
        changes.push_back(fmt::format("node {}/{} changed", c.name, n.name));
      }
    }
    for (const auto& n : old->nodes) {
      if (c.find_node(n.name) == nullptr) {
        changes.push_back(
            fmt::format("node {}/{} removed (its connections run on)", c.name, n.name));
      }
    }
  }
  for (const auto& c : before.clusters) {
    if (after.find_cluster(c.name) == nullptr)
      changes.push_back(fmt::format("cluster {} removed", c.name));
  }
  // The sections below are not swapped while running; a reload says so rather than dropping
  // the change without a word.
  auto needs_restart = [&](std::string_view what) {
    changes.push_back(fmt::format("{} changed: takes effect at the next restart", what));
  };
  const ServiceConfig& bs = before.service;
  const ServiceConfig& as = after.service;
  if (bs.shutdown_timeout != as.shutdown_timeout) {
    changes.push_back(fmt::format("shutdown_timeout now {}", format_duration(as.shutdown_timeout)));
  }
  if (bs.threads != as.threads) needs_restart("[service] threads");
  if (bs.state_dir != as.state_dir) needs_restart("[service] state_dir");
  if (before.admin.socket != after.admin.socket) needs_restart("[admin] socket");
  if (before.metrics.listen != after.metrics.listen) needs_restart("[metrics] listen");
  if (before.snmp.enabled != after.snmp.enabled || before.snmp.agentx != after.snmp.agentx) {
    needs_restart("[snmp]");
  }
  if (before.access_log.enabled != after.access_log.enabled ||
      before.access_log.path != after.access_log.path) {
    needs_restart("[access_log]");
  }
  return changes;
}

}  // namespace pb::config
