#include "protobalance/affinity/entry_store.hpp"

namespace pb::affinity {

config::Duration TtlTable::ttl_for(std::string_view cluster) const {
  const auto it = by_cluster.find(cluster);
  return it == by_cluster.end() ? fallback : it->second;
}

TtlTable make_ttl_table(const config::Config& cfg) {
  TtlTable table;
  for (const auto& cluster : cfg.clusters) table.by_cluster[cluster.name] = cluster.affinity.ttl;
  return table;
}

std::int64_t expiry_cutoff(Clock::time_point now, config::Duration ttl) {
  // An integer L is below ceil(x) exactly when it is below x: "L < cutoff" means L < now - ttl.
  return std::chrono::ceil<std::chrono::seconds>(now.time_since_epoch() - ttl).count();
}

}  // namespace pb::affinity
