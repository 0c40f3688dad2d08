#include "protobalance/affinity/store.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <ctime>
#include <stdexcept>
#include <system_error>
#include <utility>

#include "protobalance/affinity/migrations.hpp"

namespace pb::affinity {
namespace {

using SteadyClock = std::chrono::steady_clock;

// SQLiteCpp reports either the primary or the extended result code; the low byte is the primary.
int primary_code(const SQLite::Exception& e) {
  const int code = e.getErrorCode() >= 0 ? e.getErrorCode() : e.getExtendedErrorCode();
  return code & 0xFF;
}

bool is_corruption(const std::exception& e) {
  const auto* sqlite_error = dynamic_cast<const SQLite::Exception*>(&e);
  if (sqlite_error == nullptr) return false;
  const int code = primary_code(*sqlite_error);
  return code == SQLITE_CORRUPT || code == SQLITE_NOTADB;
}

// Thrown when PRAGMA quick_check finds a damaged file that SQLite itself still opens.
class CorruptionFound : public SQLite::Exception {
 public:
  explicit CorruptionFound(const std::string& detail)
      : SQLite::Exception("integrity check failed: " + detail, SQLITE_CORRUPT) {}
};

// "20261121T194503Z", for the name a corrupt file is moved to.
std::string utc_stamp(Clock::time_point t) {
  const std::time_t secs = Clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char text[32];
  const std::size_t n = std::strftime(text, sizeof text, "%Y%m%dT%H%M%SZ", &tm);
  return std::string(text, n);
}

// Binds `text` or NULL when it is empty.
void bind_text_or_null(SQLite::Statement& stmt, int index, const std::string& text) {
  if (text.empty()) {
    stmt.bind(index);
  } else {
    stmt.bind(index, text);
  }
}

}  // namespace

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

Store::Store(std::filesystem::path state_dir, StoreOptions options)
    : state_dir_(std::move(state_dir)), path_(state_dir_ / kFileName), options_(options) {
  {
    std::lock_guard db_lock(db_mutex_);
    ensure_open();
  }
  writer_ = std::thread([this] { run(); });
}

Store::~Store() {
  {
    std::lock_guard lock(queue_mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  writer_.join();
  std::lock_guard db_lock(db_mutex_);
  db_.reset();
}

std::size_t Store::queued() const {
  std::lock_guard lock(queue_mutex_);
  return queue_.size();
}

void Store::set_ttls(TtlTable ttls) {
  std::lock_guard lock(ttl_mutex_);
  ttls_ = std::move(ttls);
}

std::optional<TtlTable> Store::ttls() const {
  std::lock_guard lock(ttl_mutex_);
  return ttls_;
}

void Store::enqueue(Change change) {
  std::lock_guard lock(queue_mutex_);
  if (queue_.size() >= options_.max_queue) {
    queue_.pop_front();
    dropped_.fetch_add(1, std::memory_order_relaxed);
    if (!warned_full_) {
      warned_full_ = true;
      spdlog::error(
          "affinity store: {} changes queued while {} cannot be written; dropping the "
          "oldest (they will not survive a restart)",
          options_.max_queue, path_.string());
    }
  }
  queue_.push_back(std::move(change));
  // One wake-up when the batch gets big; below that the writer's periodic wake-up suffices,
  // so enqueue() does not cost a system call.
  if (queue_.size() == options_.batch_threshold) wake_.notify_one();
}

void Store::flush() {
  std::unique_lock lock(queue_mutex_);
  if (queue_.empty() && attempts_begun_ == attempts_done_) return;
  // Wait for an attempt that begins after this call: it takes everything queued so far,
  // including changes a failed attempt put back.
  const std::uint64_t wanted = attempts_begun_ + 1;
  flush_requested_ = true;
  wake_.notify_one();
  written_.wait(lock, [&] { return attempts_done_ >= wanted; });
}

void Store::run() {
  auto next_expiry = SteadyClock::now();
  auto next_retry = SteadyClock::now() + options_.retry_interval;
  std::unique_lock lock(queue_mutex_);
  for (;;) {
    // While failing, only the retry time, a flush() or the destructor wake the writer: a full
    // queue must not turn the wait into a busy loop.
    const bool backing_off =
        !healthy_.load(std::memory_order_relaxed) && SteadyClock::now() < next_retry;
    const auto deadline = backing_off ? next_retry : SteadyClock::now() + options_.flush_interval;
    wake_.wait_until(lock, deadline, [&] {
      return stopping_ || flush_requested_ ||
             (!backing_off && queue_.size() >= options_.batch_threshold);
    });
    const bool stopping = stopping_;
    const bool forced = stopping || flush_requested_;
    const auto now = SteadyClock::now();
    if (!forced && !healthy_.load(std::memory_order_relaxed) && now < next_retry) continue;

    std::vector<Change> batch(std::make_move_iterator(queue_.begin()),
                              std::make_move_iterator(queue_.end()));
    queue_.clear();
    flush_requested_ = false;
    ++attempts_begun_;
    lock.unlock();

    bool ok = true;
    {
      std::lock_guard db_lock(db_mutex_);
      ok = ensure_open();
      if (ok && !batch.empty()) ok = write_batch(batch, /*retry_on_fresh=*/true);
      if (ok && now >= next_expiry) {
        if (auto table = ttls()) delete_expired(*table);
        next_expiry = now + options_.expiry_interval;
      }
    }
    if (!ok) next_retry = now + options_.retry_interval;

    lock.lock();
    if (!ok && !batch.empty()) {
      // Put the batch back in front of what arrived meanwhile, keeping the order and the bound.
      const std::size_t room =
          options_.max_queue > queue_.size() ? options_.max_queue - queue_.size() : 0;
      const std::size_t skip = batch.size() > room ? batch.size() - room : 0;
      dropped_.fetch_add(skip, std::memory_order_relaxed);
      queue_.insert(queue_.begin(),
                    std::make_move_iterator(batch.begin() + static_cast<std::ptrdiff_t>(skip)),
                    std::make_move_iterator(batch.end()));
    }
    if (ok) warned_full_ = false;
    ++attempts_done_;
    written_.notify_all();
    if (stopping) {
      if (!queue_.empty()) {
        spdlog::error("affinity store: stopping with {} changes not written to {}", queue_.size(),
                      path_.string());
      }
      return;
    }
  }
}

bool Store::ensure_open() {
  if (db_) return true;
  try {
    open_and_migrate();
    succeeded();
    return true;
  } catch (const std::exception& e) {
    if (!is_corruption(e)) {
      fail("cannot open", e);
      return false;
    }
    if (!recover_from_corruption(e.what())) return false;
  }
  try {
    open_and_migrate();
    succeeded();
    return true;
  } catch (const std::exception& e) {
    fail("cannot open", e);
    return false;
  }
}

void Store::open_and_migrate() {
  std::error_code ec;
  std::filesystem::create_directories(state_dir_, ec);  // if this fails, opening says why

  auto db = std::make_unique<SQLite::Database>(path_.string(),
                                               SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE,
                                               static_cast<int>(options_.busy_timeout.count()));
  // The first statement reads the header: a file that is not a database fails here.
  db->exec("PRAGMA journal_mode=WAL");
  db->exec("PRAGMA synchronous=NORMAL");
  {
    // quick_check reads every page without checking the indexes against the tables: it finds
    // damage that would otherwise surface as failed writes later, at a small cost at start-up.
    SQLite::Statement check(*db, "PRAGMA quick_check(1)");
    if (check.executeStep()) {
      const std::string verdict = check.getColumn(0).getString();
      if (verdict != "ok") throw CorruptionFound(verdict);
    }
  }

  const auto& all = migrations();
  const int version = db->execAndGet("PRAGMA user_version").getInt();
  if (version > static_cast<int>(all.size())) {
    spdlog::warn(
        "affinity store: {} has schema version {}, newer than this balancer's {}; "
        "using it as is",
        path_.string(), version, all.size());
  }
  for (std::size_t i = static_cast<std::size_t>(std::max(version, 0)); i < all.size(); ++i) {
    SQLite::Transaction tx(*db, SQLite::TransactionBehavior::IMMEDIATE);
    db->exec(std::string(all[i].sql));
    db->exec("PRAGMA user_version = " + std::to_string(i + 1));
    tx.commit();
    spdlog::info("affinity store: {}: applied migration {}", path_.string(), all[i].file);
  }
  db_ = std::move(db);
}

bool Store::recover_from_corruption(std::string_view what) {
  db_.reset();
  const std::string stamp = utc_stamp(Clock::now());
  std::filesystem::path aside = path_;
  aside += ".corrupt-" + stamp;
  std::error_code exists_ec;
  for (int n = 1; std::filesystem::exists(aside, exists_ec); ++n) {  // twice within a second
    aside = path_;
    aside += ".corrupt-" + stamp + "-" + std::to_string(n);
  }
  std::error_code ec;
  std::filesystem::rename(path_, aside, ec);
  if (ec) {
    healthy_.store(false, std::memory_order_relaxed);
    write_errors_.fetch_add(1, std::memory_order_relaxed);
    // Retried with every reopen attempt: log it once, like fail() does.
    std::string cause = "corrupt, cannot move aside: " + ec.message();
    if (cause != last_cause_) {
      spdlog::error(
          "affinity store: {} is corrupt ({}) and cannot be moved aside: {}; running "
          "without persistence",
          path_.string(), what, ec.message());
      last_cause_ = std::move(cause);
    }
    return false;
  }
  // The WAL and shared-memory files belong to the damaged file: a fresh database must not
  // replay them.
  for (const char* suffix : {"-wal", "-shm"}) {
    std::filesystem::path side = path_;
    side += suffix;
    std::filesystem::path side_aside = aside;
    side_aside += suffix;
    std::error_code side_ec;
    if (std::filesystem::exists(side, side_ec)) std::filesystem::rename(side, side_aside, side_ec);
  }
  write_errors_.fetch_add(1, std::memory_order_relaxed);
  spdlog::error(
      "affinity store: {} is corrupt ({}); moved it to {} and starting a fresh "
      "database: persisted affinity entries and node states are lost",
      path_.string(), what, aside.string());
  return true;
}

bool Store::write_batch(const std::vector<Change>& batch, bool retry_on_fresh) {
  try {
    SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
    SQLite::Statement put(*db_,
                          "INSERT OR REPLACE INTO affinity "
                          "(cluster, client, node, first_seen, last_seen, connections) "
                          "VALUES (?1, ?2, ?3, ?4, ?5, ?6)");
    SQLite::Statement erase(*db_, "DELETE FROM affinity WHERE cluster = ?1 AND client = ?2");
    SQLite::Statement admin(*db_,
                            "INSERT INTO node_state (cluster, node, admin_state) "
                            "VALUES (?1, ?2, ?3) ON CONFLICT (cluster, node) "
                            "DO UPDATE SET admin_state = excluded.admin_state");
    SQLite::Statement avail(*db_,
                            "INSERT INTO node_state (cluster, node, unavailable_since, failures) "
                            "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (cluster, node) DO UPDATE SET "
                            "unavailable_since = excluded.unavailable_since, "
                            "failures = excluded.failures");
    SQLite::Statement route(*db_,
                            "INSERT OR REPLACE INTO listener_route (listener, cluster, set_at) "
                            "VALUES (?1, ?2, ?3)");
    SQLite::Statement unroute(*db_, "DELETE FROM listener_route WHERE listener = ?1");
    for (const Change& change : batch) {
      std::visit(
          [&](const auto& c) {
            using T = std::decay_t<decltype(c)>;
            if constexpr (std::is_same_v<T, PutAffinity>) {
              put.bind(1, c.row.cluster);
              put.bind(2, c.row.client);
              put.bind(3, c.row.node);
              put.bind(4, c.row.first_seen);
              put.bind(5, c.row.last_seen);
              put.bind(6, c.row.connections);
              put.exec();
              put.reset();
            } else if constexpr (std::is_same_v<T, EraseAffinity>) {
              erase.bind(1, c.cluster);
              erase.bind(2, c.client);
              erase.exec();
              erase.reset();
            } else if constexpr (std::is_same_v<T, PutAdminState>) {
              admin.bind(1, c.cluster);
              admin.bind(2, c.node);
              bind_text_or_null(admin, 3, c.admin_state);
              admin.exec();
              admin.reset();
            } else if constexpr (std::is_same_v<T, PutRoute>) {
              if (c.cluster.empty()) {
                unroute.bind(1, c.listener);
                unroute.exec();
                unroute.reset();
              } else {
                route.bind(1, c.listener);
                route.bind(2, c.cluster);
                route.bind(3, c.set_at);
                route.exec();
                route.reset();
              }
            } else {
              static_assert(std::is_same_v<T, PutAvailability>);
              avail.bind(1, c.cluster);
              avail.bind(2, c.node);
              avail.bind(3, c.unavailable_since_ms);
              avail.bind(4, c.failures);
              avail.exec();
              avail.reset();
            }
          },
          change);
    }
    tx.commit();
    succeeded();
    return true;
  } catch (const std::exception& e) {
    if (is_corruption(e)) {
      // Once: a fresh file that is corrupt again is a failing disk, left to the retry timer.
      return recover_from_corruption(e.what()) && retry_on_fresh && ensure_open() &&
             write_batch(batch, false);
    }
    fail("cannot write", e);
    return false;
  }
}

void Store::delete_expired(const TtlTable& ttls) {
  const auto now = Clock::now();
  try {
    SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
    // Walk the distinct clusters through the (cluster, last_seen) index, one seek each, and
    // delete each cluster's expired rows as an index range.
    SQLite::Statement first(*db_, "SELECT cluster FROM affinity ORDER BY cluster LIMIT 1");
    SQLite::Statement next(*db_,
                           "SELECT cluster FROM affinity WHERE cluster > ?1 "
                           "ORDER BY cluster LIMIT 1");
    SQLite::Statement erase(*db_, "DELETE FROM affinity WHERE cluster = ?1 AND last_seen < ?2");
    int deleted = 0;
    std::optional<std::string> cluster;
    if (first.executeStep()) cluster = first.getColumn(0).getString();
    while (cluster) {
      erase.bind(1, *cluster);
      erase.bind(2, expiry_cutoff(now, ttls.ttl_for(*cluster)));
      deleted += erase.exec();
      erase.reset();
      next.bind(1, *cluster);
      cluster.reset();
      if (next.executeStep()) cluster = next.getColumn(0).getString();
      next.reset();
    }
    tx.commit();
    if (deleted > 0) spdlog::debug("affinity store: deleted {} expired entries", deleted);
  } catch (const std::exception& e) {
    if (is_corruption(e)) {
      recover_from_corruption(e.what());
    } else {
      fail("cannot delete expired entries in", e);
    }
  }
}

void Store::fail(std::string_view what, const std::exception& e) {
  db_.reset();
  healthy_.store(false, std::memory_order_relaxed);
  write_errors_.fetch_add(1, std::memory_order_relaxed);
  std::string cause = std::string(what) + ": " + e.what();
  if (cause != last_cause_) {
    spdlog::error(
        "affinity store: {} {}: {}; running without persistence (affinity and node "
        "states are kept in memory and written when the database works again; "
        "retrying every {} ms)",
        what, path_.string(), e.what(), options_.retry_interval.count());
    last_cause_ = std::move(cause);
  }
}

void Store::succeeded() {
  if (!last_cause_.empty()) {
    spdlog::info("affinity store: {} works again", path_.string());
    last_cause_.clear();
  }
  healthy_.store(true, std::memory_order_relaxed);
}

std::vector<AffinityRow> Store::load_affinity() {
  std::lock_guard db_lock(db_mutex_);
  if (!ensure_open()) return {};
  if (auto table = ttls()) delete_expired(*table);
  if (!ensure_open()) return {};  // delete_expired() may have found the file corrupt
  std::vector<AffinityRow> rows;
  try {
    SQLite::Statement select(*db_,
                             "SELECT cluster, client, node, first_seen, last_seen, connections "
                             "FROM affinity");
    while (select.executeStep()) {
      rows.push_back(AffinityRow{select.getColumn(0).getString(), select.getColumn(1).getString(),
                                 select.getColumn(2).getString(), select.getColumn(3).getInt64(),
                                 select.getColumn(4).getInt64(), select.getColumn(5).getInt64()});
    }
  } catch (const std::exception& e) {
    rows.clear();
    if (is_corruption(e)) {
      recover_from_corruption(e.what());
      ensure_open();
    } else {
      fail("cannot read", e);
    }
  }
  return rows;
}

std::vector<NodeStateRow> Store::load_node_states() {
  std::lock_guard db_lock(db_mutex_);
  if (!ensure_open()) return {};
  std::vector<NodeStateRow> rows;
  try {
    SQLite::Statement select(*db_,
                             "SELECT cluster, node, coalesce(admin_state, ''), unavailable_since, "
                             "failures FROM node_state");
    while (select.executeStep()) {
      rows.push_back(NodeStateRow{select.getColumn(0).getString(), select.getColumn(1).getString(),
                                  select.getColumn(2).getString(), select.getColumn(3).getInt64(),
                                  select.getColumn(4).getInt64()});
    }
  } catch (const std::exception& e) {
    rows.clear();
    if (is_corruption(e)) {
      recover_from_corruption(e.what());
      ensure_open();
    } else {
      fail("cannot read", e);
    }
  }
  return rows;
}

std::map<std::string, std::string> Store::load_routes() {
  std::lock_guard db_lock(db_mutex_);
  if (!ensure_open()) return {};
  std::map<std::string, std::string> routes;
  try {
    SQLite::Statement select(*db_, "SELECT listener, cluster FROM listener_route");
    while (select.executeStep()) {
      routes.emplace(select.getColumn(0).getString(), select.getColumn(1).getString());
    }
  } catch (const std::exception& e) {
    routes.clear();
    fail("cannot read", e);
  }
  return routes;
}

std::optional<std::vector<AffinityRow>> read_affinity_file(const std::filesystem::path& db_file,
                                                           std::string_view cluster,
                                                           std::string_view node) {
  std::error_code ec;
  if (!std::filesystem::exists(db_file, ec)) return std::nullopt;
  try {
    SQLite::Database db(db_file.string(), SQLite::OPEN_READONLY, 2000);
    if (!db.tableExists("affinity")) return std::nullopt;
    SQLite::Statement select(db,
                             "SELECT cluster, client, node, first_seen, last_seen, connections "
                             "FROM affinity WHERE (?1 = '' OR cluster = ?1) "
                             "AND (?2 = '' OR node = ?2)");
    select.bind(1, std::string(cluster));
    select.bind(2, std::string(node));
    std::vector<AffinityRow> rows;
    while (select.executeStep()) {
      rows.push_back(AffinityRow{select.getColumn(0).getString(), select.getColumn(1).getString(),
                                 select.getColumn(2).getString(), select.getColumn(3).getInt64(),
                                 select.getColumn(4).getInt64(), select.getColumn(5).getInt64()});
    }
    return rows;
  } catch (const std::exception& e) {
    throw std::runtime_error(db_file.string() + ": " + e.what());
  }
}

}  // namespace pb::affinity
