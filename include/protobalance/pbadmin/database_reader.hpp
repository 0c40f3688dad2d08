#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "protobalance/affinity/client_key.hpp"
#include "protobalance/affinity/entry_store.hpp"
#include "protobalance/config/config.hpp"
#include "protobalance/state/block_table.hpp"

// pbadmin's reader of the balancer's database (`affinity list`): read-only and directly from the
// file in the configuration's state_dir, so it works with the daemon running or not.
namespace pb::pbadmin {

// What `affinity list` shows: empty strings and nullopt match everything.
struct AffinityFilter {
  std::string cluster;
  std::string node;
  std::optional<affinity::ClientKey> client;  // matches entries whose network overlaps it
};

// The database file of the balancer that `cfg` configures.
std::filesystem::path database_file(const config::Config& cfg);

// Streams the entries of the database of `cfg` that match `filter` and are not expired at `now`
// under the TTLs of `cfg` (the balancer never uses those and deletes them within seconds), in
// (cluster, client) order, one at a time. Returns false when there is no database (or no
// affinity table) yet. Throws state::SchemaTooNew when a newer release wrote the file, and
// std::runtime_error ("PATH: reason") when it cannot be read.
bool read_affinity(const config::Config& cfg, const AffinityFilter& filter,
                   affinity::Clock::time_point now,
                   const std::function<void(affinity::AffinityRow)>& fn);

// The blocks in the database of `cfg` that have not ended at `now`, ordered by network then
// listener; nullopt when there is no database (or no block table) yet. Throws as read_affinity.
std::optional<std::vector<state::BlockRow>> read_blocks(const config::Config& cfg,
                                                        std::chrono::system_clock::time_point now);

// Keeps the rows that match `filter` and are not expired at `now` under `ttls`, sorted by
// cluster then numerically by client. Rows whose client text does not parse are kept unless a
// client filter is given.
std::vector<affinity::AffinityRow> select_affinity(std::vector<affinity::AffinityRow> rows,
                                                   const AffinityFilter& filter,
                                                   const affinity::TtlTable& ttls,
                                                   affinity::Clock::time_point now);

}  // namespace pb::pbadmin
