#include "protobalance/state/affinity_table.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <algorithm>
#include <limits>
#include <utility>

#include "sqlite_values.hpp"

namespace pb::state {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Aborts a statement (SQLITE_INTERRUPT) once its deadline has passed.
int past_deadline(void* deadline) {
  return SteadyClock::now() > *static_cast<SteadyClock::time_point*>(deadline) ? 1 : 0;
}

}  // namespace

// A read-only connection with its prepared point query, for find().
struct AffinityTable::Reader {
  SteadyClock::time_point deadline;
  std::unique_ptr<SQLite::Database> db;
  std::unique_ptr<SQLite::Statement> find;
};

AffinityTable::AffinityTable(Database& db, AffinityTableOptions options)
    : db_(db), options_(options) {}

AffinityTable::~AffinityTable() = default;

std::size_t AffinityTable::for_each(const std::optional<affinity::TtlTable>& ttls,
                                    const std::function<bool(const affinity::AffinityRowView&)>& fn,
                                    std::size_t* skipped) {
  {
    // Opens (and migrates) the file if that could not be done before.
    std::lock_guard db_lock(db_.mutex());
    if (!db_.ensure_open()) return 0;
  }
  const auto now = affinity::Clock::now();
  std::size_t passed = 0;
  std::size_t bad = 0;
  try {
    SQLite::Database db(db_.path().string(), SQLite::OPEN_READONLY,
                        static_cast<int>(db_.options().busy_timeout.count()));
    SQLite::Statement select(db,
                             "SELECT cluster, client, node, first_seen, last_seen, connections "
                             "FROM affinity");
    std::string cluster;
    std::int64_t cutoff = std::numeric_limits<std::int64_t>::min();
    while (select.executeStep()) {
      const std::string_view c = sql::column_text(select.getColumn(0));
      if (c != cluster) {
        cluster = c;
        if (ttls) cutoff = affinity::expiry_cutoff(now, ttls->ttl_for(cluster));
      }
      const std::int64_t last_seen = select.getColumn(4).getInt64();
      if (last_seen < cutoff) continue;
      const auto key = sql::column_key(select.getColumn(1));
      if (!key) {
        ++bad;
        continue;
      }
      ++passed;
      if (!fn(affinity::AffinityRowView{cluster, *key, sql::column_text(select.getColumn(2)),
                                        select.getColumn(3).getInt64(), last_seen,
                                        select.getColumn(5).getInt64()})) {
        break;
      }
    }
  } catch (const std::exception& e) {
    std::lock_guard db_lock(db_.mutex());
    db_.handle_error("cannot read", e);
  }
  if (skipped != nullptr) *skipped = bad;
  return passed;
}

std::map<std::string, std::size_t, std::less<>> AffinityTable::count() {
  std::map<std::string, std::size_t, std::less<>> counts;
  try {
    SQLite::Database db(db_.path().string(), SQLite::OPEN_READONLY,
                        static_cast<int>(db_.options().busy_timeout.count()));
    SQLite::Statement select(db, "SELECT cluster, count(*) FROM affinity GROUP BY cluster");
    while (select.executeStep()) {
      counts[select.getColumn(0).getString()] =
          static_cast<std::size_t>(select.getColumn(1).getInt64());
    }
  } catch (const std::exception&) {
    counts.clear();  // only a hint for sizing: for_each() reports read failures
  }
  return counts;
}

std::optional<affinity::StoredEntry> AffinityTable::find(std::string_view cluster,
                                                         const affinity::ClientKey& key,
                                                         std::chrono::microseconds budget) {
  std::unique_ptr<Reader> reader;
  {
    std::lock_guard lock(readers_mutex_);
    if (!readers_.empty()) {
      reader = std::move(readers_.back());
      readers_.pop_back();
    }
  }
  std::optional<affinity::StoredEntry> found;
  try {
    if (!reader) {
      reader = std::make_unique<Reader>();
      // No busy wait: in WAL mode a reader is not blocked by the writer.
      reader->db =
          std::make_unique<SQLite::Database>(db_.path().string(), SQLite::OPEN_READONLY, 0);
      reader->find = std::make_unique<SQLite::Statement>(
          *reader->db,
          "SELECT node, first_seen, last_seen, connections FROM affinity "
          "WHERE cluster = ?1 AND client = ?2");
      sqlite3_progress_handler(reader->db->getHandle(), 200, past_deadline, &reader->deadline);
    }
    reader->deadline = SteadyClock::now() + budget;
    SQLite::Statement& select = *reader->find;
    select.bind(1, std::string(cluster));
    sql::bind_key(select, 2, key);
    if (select.executeStep()) {
      found = affinity::StoredEntry{select.getColumn(0).getString(), select.getColumn(1).getInt64(),
                                    select.getColumn(2).getInt64(), select.getColumn(3).getInt64()};
    }
    select.reset();
    select.clearBindings();
  } catch (const std::exception& e) {
    spdlog::debug("affinity store: look-up of {} in {} failed: {}", key.to_string(), cluster,
                  e.what());
    return std::nullopt;  // the reader is dropped: a fresh connection next time
  }
  std::lock_guard lock(readers_mutex_);
  readers_.push_back(std::move(reader));
  return found;
}

void AffinityTable::delete_expired(const affinity::TtlTable& ttls, bool all) {
  const auto now = affinity::Clock::now();
  try {
    // A step that reaches the end of the table ends the pass: the next call starts over.
    const std::size_t steps = std::max<std::size_t>(1, options_.expiry_steps);
    for (std::size_t n = 1; delete_expired_step(ttls, now) && (all || n < steps); ++n) {
    }
  } catch (const std::exception& e) {
    db_.handle_error("cannot delete expired entries in", e);
  }
}

bool AffinityTable::delete_expired_step(const affinity::TtlTable& ttls,
                                        affinity::Clock::time_point now) {
  // The step covers the next expiry_chunk rows after the cursor within one cluster, found
  // through the primary key (no index on last_seen: it would cost as much disk as the table),
  // and deletes the expired ones among them in one short transaction.
  SQLite::Database& db = db_.connection();
  std::optional<std::string> cluster;
  if (expiry_cluster_.empty()) {
    SQLite::Statement first(db, "SELECT cluster FROM affinity ORDER BY cluster LIMIT 1");
    if (first.executeStep()) cluster = first.getColumn(0).getString();
    expiry_client_.clear();
  } else {
    cluster = expiry_cluster_;
  }
  if (!cluster) return false;  // empty table

  SQLite::Transaction tx(db, SQLite::TransactionBehavior::IMMEDIATE);
  SQLite::Statement bound(db,
                          "SELECT client FROM affinity WHERE cluster = ?1 AND client > ?2 "
                          "ORDER BY client LIMIT 1 OFFSET ?3");
  bound.bind(1, *cluster);
  sql::bind_bytes(bound, 2, expiry_client_);
  bound.bind(3, static_cast<std::int64_t>(std::max<std::size_t>(1, options_.expiry_chunk) - 1));
  std::optional<std::vector<std::uint8_t>> last;
  if (bound.executeStep()) {
    const auto column = bound.getColumn(0);
    const auto* p = static_cast<const std::uint8_t*>(column.getBlob());
    last.emplace(p, p + column.getBytes());
  }
  SQLite::Statement erase(db, last ? "DELETE FROM affinity WHERE cluster = ?1 AND client > ?2 "
                                     "AND client <= ?4 AND last_seen < ?3"
                                   : "DELETE FROM affinity WHERE cluster = ?1 AND client > ?2 "
                                     "AND last_seen < ?3");
  erase.bind(1, *cluster);
  sql::bind_bytes(erase, 2, expiry_client_);
  erase.bind(3, affinity::expiry_cutoff(now, ttls.ttl_for(*cluster)));
  if (last) sql::bind_bytes(erase, 4, *last);
  const int deleted = erase.exec();
  tx.commit();
  if (deleted > 0) {
    spdlog::debug("affinity store: deleted {} expired entries of cluster {}", deleted, *cluster);
  }
  if (last) {
    expiry_cluster_ = *cluster;
    expiry_client_ = std::move(*last);
    return true;
  }
  // This cluster is done: the next one, or the end of the table.
  SQLite::Statement next(
      db, "SELECT cluster FROM affinity WHERE cluster > ?1 ORDER BY cluster LIMIT 1");
  next.bind(1, *cluster);
  expiry_client_.clear();
  if (next.executeStep()) {
    expiry_cluster_ = next.getColumn(0).getString();
    return true;
  }
  expiry_cluster_.clear();
  return false;
}

AffinityTable::Writer::Writer(SQLite::Database& db)
    : statements_(db, {"INSERT OR REPLACE INTO affinity "
                       "(cluster, client, node, first_seen, last_seen, connections) "
                       "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                       "DELETE FROM affinity WHERE cluster = ?1 AND client = ?2"}) {}

void AffinityTable::Writer::write(const PutAffinity& change) {
  const auto key = affinity::parse_client(change.row.client);
  if (!key) return;
  sql::execute(statements_[0], change.row.cluster, *key, change.row.node, change.row.first_seen,
               change.row.last_seen, change.row.connections);
}

void AffinityTable::Writer::write(const EraseAffinity& change) {
  const auto key = affinity::parse_client(change.client);
  if (!key) return;
  sql::execute(statements_[1], change.cluster, *key);
}

}  // namespace pb::state
