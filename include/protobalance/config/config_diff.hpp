#pragma once

#include <string>
#include <vector>

#include "protobalance/config/config.hpp"

namespace pb::config {

// What a reload changes: one line per difference between two configurations, in the order
// listeners, clusters (with their nodes), then the sections that are not swapped while running
// ("[metrics] listen changed: takes effect at the next restart"). Empty when nothing that the
// balancer acts on differs. Written for the log and for `pbadmin reload`.
std::vector<std::string> describe_changes(const Config& before, const Config& after);

// Whether [cluster.health], [cluster.agent] or slow_start differ between two versions of a
// cluster (positions in the file aside).
bool node_health_differs(const ClusterConfig& a, const ClusterConfig& b);

}  // namespace pb::config
