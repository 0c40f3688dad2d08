#include "protobalance/pbadmin/database_reader.hpp"

#include <algorithm>
#include <tuple>
#include <utility>

#include "protobalance/state/affinity_file.hpp"
#include "protobalance/state/database.hpp"

namespace pb::pbadmin {

std::filesystem::path database_file(const config::Config& cfg) {
  return cfg.service.state_dir / state::Database::kFileName;
}

bool read_affinity(const config::Config& cfg, const AffinityFilter& filter,
                   affinity::Clock::time_point now,
                   const std::function<void(affinity::AffinityRow)>& fn) {
  const auto ttls = affinity::make_ttl_table(cfg);
  // Rows come in (cluster, client) order from the index; a client filter is a point query per
  // shorter prefix plus one range.
  return state::stream_affinity_file(
      database_file(cfg), filter.cluster, filter.node, filter.client,
      [&](const affinity::AffinityRowView& r) {
        if (r.last_seen < affinity::expiry_cutoff(now, ttls.ttl_for(r.cluster))) return;
        fn(affinity::AffinityRow{std::string(r.cluster), r.key.to_string(), std::string(r.node),
                                 r.first_seen, r.last_seen, r.connections});
      });
}

std::optional<std::vector<state::BlockRow>> read_blocks(const config::Config& cfg,
                                                        std::chrono::system_clock::time_point now) {
  const auto seconds =
      std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  return state::read_block_file(database_file(cfg), seconds);
}

std::vector<affinity::AffinityRow> select_affinity(std::vector<affinity::AffinityRow> rows,
                                                   const AffinityFilter& filter,
                                                   const affinity::TtlTable& ttls,
                                                   affinity::Clock::time_point now) {
  struct Keyed {
    std::optional<affinity::ClientKey> key;
    affinity::AffinityRow row;
  };
  std::vector<Keyed> kept;
  kept.reserve(rows.size());
  for (auto& row : rows) {
    if (!filter.cluster.empty() && row.cluster != filter.cluster) continue;
    if (!filter.node.empty() && row.node != filter.node) continue;
    if (row.last_seen < affinity::expiry_cutoff(now, ttls.ttl_for(row.cluster))) continue;
    auto key = affinity::parse_client(row.client);
    if (filter.client && !(key && key->overlaps(*filter.client))) continue;
    kept.push_back(Keyed{key, std::move(row)});
  }
  // Numeric client order reads naturally (10.0.0.9 before 10.0.0.10); unparsable text last.
  std::sort(kept.begin(), kept.end(), [](const Keyed& a, const Keyed& b) {
    return std::forward_as_tuple(a.row.cluster, !a.key, a.key, a.row.client) <
           std::forward_as_tuple(b.row.cluster, !b.key, b.key, b.row.client);
  });
  std::vector<affinity::AffinityRow> result;
  result.reserve(kept.size());
  for (auto& k : kept) result.push_back(std::move(k.row));
  return result;
}

}  // namespace pb::pbadmin
