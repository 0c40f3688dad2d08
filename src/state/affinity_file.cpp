#include "protobalance/state/affinity_file.hpp"

#include <SQLiteCpp/SQLiteCpp.h>

#include <algorithm>
#include <array>
#include <stdexcept>
#include <string>
#include <system_error>
#include <tuple>

#include "protobalance/state/database.hpp"
#include "protobalance/state/migrations.hpp"
#include "sqlite_values.hpp"

namespace pb::state {
namespace {

using affinity::AffinityRowView;
using affinity::ClientKey;

// Streams the rows of a database still in the text format of schema versions 1 and 2 (the
// balancer converts it when it next opens it): a scan, sorted in memory.
void stream_text_rows(SQLite::Database& db, std::string_view cluster, std::string_view node,
                      const std::optional<ClientKey>& client,
                      const std::function<void(const AffinityRowView&)>& fn) {
  struct Row {
    std::string cluster;
    ClientKey key;
    std::string node;
    std::int64_t first_seen, last_seen, connections;
  };
  std::vector<Row> rows;
  SQLite::Statement select(db,
                           "SELECT cluster, client, node, first_seen, last_seen, connections "
                           "FROM affinity WHERE (?1 = '' OR cluster = ?1) "
                           "AND (?2 = '' OR node = ?2)");
  select.bind(1, std::string(cluster));
  select.bind(2, std::string(node));
  while (select.executeStep()) {
    const auto key = affinity::parse_client(sql::column_text(select.getColumn(1)));
    if (!key || (client && !key->overlaps(*client))) continue;
    rows.push_back(Row{select.getColumn(0).getString(), *key, select.getColumn(2).getString(),
                       select.getColumn(3).getInt64(), select.getColumn(4).getInt64(),
                       select.getColumn(5).getInt64()});
  }
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    return std::tie(a.cluster, a.key) < std::tie(b.cluster, b.key);
  });
  for (const Row& r : rows) {
    fn(AffinityRowView{r.cluster, r.key, r.node, r.first_seen, r.last_seen, r.connections});
  }
}

// Streams the rows of one cluster in key order: every entry when `client` is nullopt, else the
// entries that contain it (one point query per shorter prefix) and then the entries inside it
// (one index range).
void stream_cluster(SQLite::Database& db, const std::string& cluster, std::string_view node,
                    const std::optional<ClientKey>& client,
                    const std::function<void(const AffinityRowView&)>& fn) {
  const auto emit = [&](SQLite::Statement& stmt) {
    while (stmt.executeStep()) {
      const auto key = sql::column_key(stmt.getColumn(0));
      if (!key) continue;
      const std::string_view n = sql::column_text(stmt.getColumn(1));
      if (!node.empty() && n != node) continue;
      fn(AffinityRowView{cluster, *key, n, stmt.getColumn(2).getInt64(),
                         stmt.getColumn(3).getInt64(), stmt.getColumn(4).getInt64()});
    }
    stmt.reset();
  };
  constexpr const char* kColumns = "SELECT client, node, first_seen, last_seen, connections ";
  if (!client) {
    SQLite::Statement all(
        db, std::string(kColumns) + "FROM affinity WHERE cluster = ?1 ORDER BY client");
    all.bind(1, cluster);
    emit(all);
    return;
  }
  SQLite::Statement point(
      db, std::string(kColumns) + "FROM affinity WHERE cluster = ?1 AND client = ?2");
  point.bind(1, cluster);
  for (int p = 0; p < client->prefix; ++p) {
    sql::bind_key(point, 2, client->widened(static_cast<std::uint8_t>(p)));
    emit(point);
  }
  SQLite::Statement range(db, std::string(kColumns) +
                                  "FROM affinity WHERE cluster = ?1 AND client >= ?2 "
                                  "AND client <= ?3 ORDER BY client");
  range.bind(1, cluster);
  sql::bind_key(range, 2, *client);
  std::array<std::uint8_t, ClientKey::kBlobSize> upper{};
  const auto last = client->last_address();
  std::copy(last.begin(), last.end(), upper.begin());
  upper[16] = 0xFF;
  range.bind(3, upper.data(), static_cast<int>(upper.size()));
  emit(range);
}

}  // namespace

bool stream_affinity_file(const std::filesystem::path& db_file, std::string_view cluster,
                          std::string_view node, const std::optional<ClientKey>& client,
                          const std::function<void(const AffinityRowView&)>& fn) {
  std::error_code ec;
  if (!std::filesystem::exists(db_file, ec)) return false;
  try {
    SQLite::Database db(db_file.string(), SQLite::OPEN_READONLY, 2000);
    const int version = schema_version(db, db_file, "pbadmin");
    if (!db.tableExists("affinity")) return false;
    if (version < kBinaryKeyVersion) {
      stream_text_rows(db, cluster, node, client, fn);
      return true;
    }
    if (!cluster.empty()) {
      stream_cluster(db, std::string(cluster), node, client, fn);
      return true;
    }
    // Each cluster in turn, found by one seek each.
    SQLite::Statement next(db,
                           "SELECT cluster FROM affinity WHERE cluster > ?1 "
                           "ORDER BY cluster LIMIT 1");
    std::string current;
    for (;;) {
      next.bind(1, current);
      if (!next.executeStep()) break;
      current = next.getColumn(0).getString();
      next.reset();
      stream_cluster(db, current, node, client, fn);
    }
    return true;
  } catch (const SchemaTooNew&) {
    throw;
  } catch (const std::exception& e) {
    throw std::runtime_error(db_file.string() + ": " + e.what());
  }
}

std::optional<std::vector<affinity::AffinityRow>> read_affinity_file(
    const std::filesystem::path& db_file, std::string_view cluster, std::string_view node) {
  std::vector<affinity::AffinityRow> rows;
  const bool found =
      stream_affinity_file(db_file, cluster, node, std::nullopt, [&](const AffinityRowView& r) {
        rows.push_back(affinity::AffinityRow{std::string(r.cluster), r.key.to_string(),
                                             std::string(r.node), r.first_seen, r.last_seen,
                                             r.connections});
      });
  if (!found) return std::nullopt;
  return rows;
}

}  // namespace pb::state
