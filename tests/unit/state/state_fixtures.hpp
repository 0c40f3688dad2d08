#pragma once

// What the state area's tests share: rows, the database as another process sees it, the files a
// recovery leaves behind. Every test runs the real store on a real file in a fresh directory.

#include <SQLiteCpp/SQLiteCpp.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>
#include <tuple>
#include <vector>

#include "protobalance/state/affinity_file.hpp"
#include "protobalance/state/store.hpp"

namespace pb::state::fixtures {

using affinity::AffinityRow;
using affinity::AffinityRowView;
using affinity::Clock;
using affinity::parse_client;

inline std::int64_t now_s() {
  return std::chrono::floor<std::chrono::seconds>(Clock::now().time_since_epoch()).count();
}

inline AffinityRow row(std::string cluster, std::string client, std::string node,
                       std::int64_t seen) {
  return AffinityRow{std::move(cluster), std::move(client), std::move(node), seen - 100, seen, 3};
}

inline std::vector<AffinityRow> sorted(std::vector<AffinityRow> rows) {
  std::sort(rows.begin(), rows.end(), [](const AffinityRow& a, const AffinityRow& b) {
    return std::tie(a.cluster, a.client) < std::tie(b.cluster, b.client);
  });
  return rows;
}

// Rows as another process (pbadmin) sees them, read-only, while the store may be open.
inline std::vector<AffinityRow> on_disk(const Store& store) {
  return sorted(read_affinity_file(store.path()).value_or(std::vector<AffinityRow>{}));
}

inline int user_version(const std::filesystem::path& db_file) {
  SQLite::Database db(db_file.string(), SQLite::OPEN_READONLY);
  return db.execAndGet("PRAGMA user_version").getInt();
}

inline std::vector<std::filesystem::path> corrupt_copies(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> found;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("protobalance.db.corrupt-") && !name.ends_with("-wal") &&
        !name.ends_with("-shm")) {
      found.push_back(entry.path());
    }
  }
  return found;
}

// The clients of `stream_affinity_file` for `client` in `cluster`, in the order they came.
inline std::vector<std::string> streamed(const Store& store, std::string_view cluster,
                                         const std::string& client) {
  std::vector<std::string> clients;
  stream_affinity_file(store.path(), cluster, "", parse_client(client),
                       [&](const AffinityRowView& r) { clients.push_back(r.key.to_string()); });
  return clients;
}

}  // namespace pb::state::fixtures
