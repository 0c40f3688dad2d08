#pragma once

#include <filesystem>
#include <functional>
#include <optional>
#include <string_view>
#include <vector>

#include "protobalance/affinity/entry_store.hpp"

namespace pb::state {

// Reading the affinity table of a database file from another process (pbadmin): read-only, so
// it works while the balancer writes (WAL mode) and while it is down.

// Streams every row of `cluster` (all when empty) and `node` (all when empty) whose client
// overlaps `client` (all when nullopt): a network's entries are one range of the index, and the
// entries containing an address are point look-ups. Rows come in (cluster, client) order, one at
// a time, so memory stays flat. Returns false when the file does not exist or holds no affinity
// table; throws std::runtime_error ("PATH: reason") when it cannot be read, SchemaTooNew when a
// newer release wrote it.
bool stream_affinity_file(const std::filesystem::path& db_file, std::string_view cluster,
                          std::string_view node, const std::optional<affinity::ClientKey>& client,
                          const std::function<void(const affinity::AffinityRowView&)>& fn);

// The rows stream_affinity_file() streams for `cluster` and `node` (no client filter), in a
// vector; nullopt when the file does not exist or holds no affinity table yet.
std::optional<std::vector<affinity::AffinityRow>> read_affinity_file(
    const std::filesystem::path& db_file, std::string_view cluster = {},
    std::string_view node = {});

}  // namespace pb::state
