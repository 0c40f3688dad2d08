#include "protobalance/affinity/store.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <algorithm>
#include <ctime>
#include <limits>
#include <tuple>
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

// The schema version from which `client` is the 17-byte binary key (migrations/0003).
constexpr int kBinaryKeyVersion = 3;

// pb_client_key(text): the binary key of a client's text form, NULL when it does not parse.
// Registered on the writer's connection for migrations/0003 (SQLite has no address functions).
void sql_client_key(sqlite3_context* ctx, int /*argc*/, sqlite3_value** argv) {
  const auto* text = sqlite3_value_text(argv[0]);
  if (text == nullptr) {
    sqlite3_result_null(ctx);
    return;
  }
  const auto key = parse_client(std::string_view(reinterpret_cast<const char*>(text),
                                                 static_cast<std::size_t>(sqlite3_value_bytes(argv[0]))));
  if (!key) {
    sqlite3_result_null(ctx);
    return;
  }
  const auto blob = key->to_blob();
  sqlite3_result_blob(ctx, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
}

void bind_key(SQLite::Statement& stmt, int index, const ClientKey& key) {
  const auto blob = key.to_blob();
  stmt.bind(index, blob.data(), static_cast<int>(blob.size()));
}

// A blob, also when empty (a null pointer would bind NULL, which compares as unknown).
void bind_bytes(SQLite::Statement& stmt, int index, const std::vector<std::uint8_t>& bytes) {
  static const std::uint8_t kNone = 0;
  stmt.bind(index, bytes.empty() ? &kNone : bytes.data(), static_cast<int>(bytes.size()));
}

std::optional<ClientKey> column_key(const SQLite::Column& column) {
  return ClientKey::from_blob(column.getBlob(), static_cast<std::size_t>(column.getBytes()));
}

std::string_view column_text(const SQLite::Column& column) {
  return std::string_view(column.getText(), static_cast<std::size_t>(column.getBytes()));
}

std::string too_new_message(const std::filesystem::path& file, int version, std::size_t known,
                            std::string_view who) {
  return file.string() + ": database schema version " + std::to_string(version) +
         " is newer than this " + std::string(who) + " knows (" + std::to_string(known) +
         "): it was written by a newer Proto Balance release; refusing to use it (run that "
         "release, or move the file aside to start with an empty database)";
}

// Aborts a statement (SQLITE_INTERRUPT) once its deadline has passed.
int past_deadline(void* deadline) {
  return SteadyClock::now() > *static_cast<SteadyClock::time_point*>(deadline) ? 1 : 0;
}

}  // namespace

// A read-only connection with its prepared point query, for find_affinity().
struct Store::Reader {
  SteadyClock::time_point deadline;
  std::unique_ptr<SQLite::Database> db;
  std::unique_ptr<SQLite::Statement> find;
};

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
    ensure_open(/*refuse_newer=*/true);
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
      if (ok && check_pending_) {
        deferred_quick_check();
        ok = db_ != nullptr;
      }
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

bool Store::ensure_open(bool refuse_newer) {
  if (db_) return true;
  try {
    open_and_migrate();
    succeeded();
    return true;
  } catch (const SchemaTooNew& e) {
    if (refuse_newer) throw;
    fail("cannot open", e);
    return false;
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
  // quick_check reads every page without checking the indexes against the tables: it finds
  // damage that would otherwise surface as failed writes later. It costs about a second per
  // few hundred megabytes, so a large file is checked by the writer thread after the start
  // (the balancer serves meanwhile) instead of here.
  std::error_code size_ec;
  const auto size = std::filesystem::file_size(path_, size_ec);
  if (!size_ec && size > kQuickCheckAtOpenBytes) {
    check_pending_ = true;
  } else {
    quick_check(*db);
  }

  const auto& all = migrations();
  const int version = db->execAndGet("PRAGMA user_version").getInt();
  if (version > static_cast<int>(all.size())) {
    throw SchemaTooNew(too_new_message(path_, version, all.size(), "balancer"));
  }
  sqlite3_create_function_v2(db->getHandle(), "pb_client_key", 1,
                             SQLITE_UTF8 | SQLITE_DETERMINISTIC, nullptr, sql_client_key, nullptr,
                             nullptr, nullptr);
  bool rewrote_affinity = false;
  for (std::size_t i = static_cast<std::size_t>(std::max(version, 0)); i < all.size(); ++i) {
    const auto started = SteadyClock::now();
    SQLite::Transaction tx(*db, SQLite::TransactionBehavior::IMMEDIATE);
    db->exec(std::string(all[i].sql));
    db->exec("PRAGMA user_version = " + std::to_string(i + 1));
    tx.commit();
    const auto took =
        std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - started);
    spdlog::info("affinity store: {}: applied migration {} in {} ms", path_.string(), all[i].file,
                 took.count());
    if (version > 0 && static_cast<int>(i + 1) == kBinaryKeyVersion) rewrote_affinity = true;
  }
  if (rewrote_affinity) {
    // The text-keyed table's pages are free now; give them back so the file shrinks to the new
    // size (a one-time cost of the upgrade).
    const auto started = SteadyClock::now();
    db->exec("VACUUM");
    spdlog::info("affinity store: {}: compacted in {} ms", path_.string(),
                 std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - started)
                     .count());
  }
  db_ = std::move(db);
}

void Store::quick_check(SQLite::Database& db) {
  SQLite::Statement check(db, "PRAGMA quick_check(1)");
  if (check.executeStep()) {
    const std::string verdict = check.getColumn(0).getString();
    if (verdict != "ok") throw CorruptionFound(verdict);
  }
}

void Store::deferred_quick_check() {
  check_pending_ = false;
  const auto started = SteadyClock::now();
  try {
    quick_check(*db_);
    spdlog::info("affinity store: {}: integrity check passed in {} ms", path_.string(),
                 std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() -
                                                                       started)
                     .count());
  } catch (const std::exception& e) {
    if (is_corruption(e)) {
      if (recover_from_corruption(e.what())) ensure_open();
    } else {
      fail("cannot check", e);
    }
  }
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
    // Split into transactions of at most max_transaction changes: each holds the write lock
    // only briefly. A failure puts the whole batch back; replaying its committed part is
    // harmless (every change is a put or a delete of a whole row).
    const std::size_t step = std::max<std::size_t>(1, options_.max_transaction);
    for (std::size_t begin = 0; begin < batch.size(); begin += step) {
      const std::size_t end = std::min(batch.size(), begin + step);
      write_transaction(batch, begin, end);
    }
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

void Store::write_transaction(const std::vector<Change>& batch, std::size_t begin,
                              std::size_t end) {
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
  for (std::size_t i = begin; i < end; ++i) {
    std::visit(
        [&](const auto& c) {
          using T = std::decay_t<decltype(c)>;
          if constexpr (std::is_same_v<T, PutAffinity>) {
            const auto key = parse_client(c.row.client);
            if (!key) return;  // not an address: nothing the map could ever look up
            put.bind(1, c.row.cluster);
            bind_key(put, 2, *key);
            put.bind(3, c.row.node);
            put.bind(4, c.row.first_seen);
            put.bind(5, c.row.last_seen);
            put.bind(6, c.row.connections);
            put.exec();
            put.reset();
          } else if constexpr (std::is_same_v<T, EraseAffinity>) {
            const auto key = parse_client(c.client);
            if (!key) return;
            erase.bind(1, c.cluster);
            bind_key(erase, 2, *key);
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
        batch[i]);
  }
  tx.commit();
}

void Store::delete_expired(const TtlTable& ttls, bool all) {
  const auto now = Clock::now();
  try {
    // A step that reaches the end of the table ends the pass: the next interval starts over.
    const std::size_t steps = std::max<std::size_t>(1, options_.expiry_steps);
    for (std::size_t n = 1; delete_expired_step(ttls, now) && (all || n < steps); ++n) {
    }
  } catch (const std::exception& e) {
    if (is_corruption(e)) {
      recover_from_corruption(e.what());
    } else {
      fail("cannot delete expired entries in", e);
    }
  }
}

bool Store::delete_expired_step(const TtlTable& ttls, Clock::time_point now) {
  // The step covers the next expiry_chunk rows after the cursor within one cluster, found
  // through the primary key (no index on last_seen: it would cost as much disk as the table),
  // and deletes the expired ones among them in one short transaction.
  std::optional<std::string> cluster;
  if (expiry_cluster_.empty()) {
    SQLite::Statement first(*db_, "SELECT cluster FROM affinity ORDER BY cluster LIMIT 1");
    if (first.executeStep()) cluster = first.getColumn(0).getString();
    expiry_client_.clear();
  } else {
    cluster = expiry_cluster_;
  }
  if (!cluster) return false;  // empty table

  SQLite::Transaction tx(*db_, SQLite::TransactionBehavior::IMMEDIATE);
  SQLite::Statement bound(*db_,
                          "SELECT client FROM affinity WHERE cluster = ?1 AND client > ?2 "
                          "ORDER BY client LIMIT 1 OFFSET ?3");
  bound.bind(1, *cluster);
  bind_bytes(bound, 2, expiry_client_);
  bound.bind(3, static_cast<std::int64_t>(std::max<std::size_t>(1, options_.expiry_chunk) - 1));
  std::optional<std::vector<std::uint8_t>> last;
  if (bound.executeStep()) {
    const auto column = bound.getColumn(0);
    const auto* p = static_cast<const std::uint8_t*>(column.getBlob());
    last.emplace(p, p + column.getBytes());
  }
  SQLite::Statement erase(*db_,
                          last ? "DELETE FROM affinity WHERE cluster = ?1 AND client > ?2 "
                                 "AND client <= ?4 AND last_seen < ?3"
                               : "DELETE FROM affinity WHERE cluster = ?1 AND client > ?2 "
                                 "AND last_seen < ?3");
  erase.bind(1, *cluster);
  bind_bytes(erase, 2, expiry_client_);
  erase.bind(3, expiry_cutoff(now, ttls.ttl_for(*cluster)));
  if (last) bind_bytes(erase, 4, *last);
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
  SQLite::Statement next(*db_,
                         "SELECT cluster FROM affinity WHERE cluster > ?1 ORDER BY cluster LIMIT 1");
  next.bind(1, *cluster);
  expiry_client_.clear();
  if (next.executeStep()) {
    expiry_cluster_ = next.getColumn(0).getString();
    return true;
  }
  expiry_cluster_.clear();
  return false;
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
  {
    // All at once here (tests, tools): the background load only skips expired rows.
    std::lock_guard db_lock(db_mutex_);
    if (ensure_open()) {
      if (auto table = ttls()) delete_expired(*table, /*all=*/true);
    }
  }
  std::vector<AffinityRow> rows;
  for_each_affinity([&](const AffinityRowView& r) {
    rows.push_back(AffinityRow{std::string(r.cluster), r.key.to_string(), std::string(r.node),
                               r.first_seen, r.last_seen, r.connections});
    return true;
  });
  return rows;
}

std::size_t Store::for_each_affinity(const std::function<bool(const AffinityRowView&)>& fn,
                                     std::size_t* skipped) {
  {
    // Opens (and migrates) the file if the constructor could not.
    std::lock_guard db_lock(db_mutex_);
    if (!ensure_open()) return 0;
  }
  const auto table = ttls();
  const auto now = Clock::now();
  std::size_t passed = 0;
  std::size_t bad = 0;
  try {
    SQLite::Database db(path_.string(), SQLite::OPEN_READONLY,
                        static_cast<int>(options_.busy_timeout.count()));
    SQLite::Statement select(db,
                             "SELECT cluster, client, node, first_seen, last_seen, connections "
                             "FROM affinity");
    std::string cluster;
    std::int64_t cutoff = std::numeric_limits<std::int64_t>::min();
    while (select.executeStep()) {
      const std::string_view c = column_text(select.getColumn(0));
      if (c != cluster) {
        cluster = c;
        if (table) cutoff = expiry_cutoff(now, table->ttl_for(cluster));
      }
      const std::int64_t last_seen = select.getColumn(4).getInt64();
      if (last_seen < cutoff) continue;
      const auto key = column_key(select.getColumn(1));
      if (!key) {
        ++bad;
        continue;
      }
      ++passed;
      if (!fn(AffinityRowView{cluster, *key, column_text(select.getColumn(2)),
                              select.getColumn(3).getInt64(), last_seen,
                              select.getColumn(5).getInt64()})) {
        break;
      }
    }
  } catch (const std::exception& e) {
    std::lock_guard db_lock(db_mutex_);
    if (is_corruption(e)) {
      recover_from_corruption(e.what());
      ensure_open();
    } else {
      fail("cannot read", e);
    }
  }
  if (skipped != nullptr) *skipped = bad;
  return passed;
}

std::map<std::string, std::size_t, std::less<>> Store::count_affinity() {
  std::map<std::string, std::size_t, std::less<>> counts;
  try {
    SQLite::Database db(path_.string(), SQLite::OPEN_READONLY,
                        static_cast<int>(options_.busy_timeout.count()));
    SQLite::Statement select(db, "SELECT cluster, count(*) FROM affinity GROUP BY cluster");
    while (select.executeStep()) {
      counts[select.getColumn(0).getString()] =
          static_cast<std::size_t>(select.getColumn(1).getInt64());
    }
  } catch (const std::exception&) {
    counts.clear();  // only a hint for sizing: for_each_affinity() reports read failures
  }
  return counts;
}

std::optional<StoredEntry> Store::find_affinity(std::string_view cluster, const ClientKey& key,
                                                std::chrono::microseconds budget) {
  std::unique_ptr<Reader> reader;
  {
    std::lock_guard lock(readers_mutex_);
    if (!readers_.empty()) {
      reader = std::move(readers_.back());
      readers_.pop_back();
    }
  }
  std::optional<StoredEntry> found;
  try {
    if (!reader) {
      reader = std::make_unique<Reader>();
      // No busy wait: in WAL mode a reader is not blocked by the writer.
      reader->db = std::make_unique<SQLite::Database>(path_.string(), SQLite::OPEN_READONLY, 0);
      reader->find = std::make_unique<SQLite::Statement>(
          *reader->db,
          "SELECT node, first_seen, last_seen, connections FROM affinity "
          "WHERE cluster = ?1 AND client = ?2");
      sqlite3_progress_handler(reader->db->getHandle(), 200, past_deadline, &reader->deadline);
    }
    reader->deadline = SteadyClock::now() + budget;
    SQLite::Statement& find = *reader->find;
    find.bind(1, std::string(cluster));
    bind_key(find, 2, key);
    if (find.executeStep()) {
      found = StoredEntry{find.getColumn(0).getString(), find.getColumn(1).getInt64(),
                          find.getColumn(2).getInt64(), find.getColumn(3).getInt64()};
    }
    find.reset();
    find.clearBindings();
  } catch (const std::exception& e) {
    spdlog::debug("affinity store: look-up of {} in {} failed: {}", key.to_string(), cluster,
                  e.what());
    reader.reset();  // a fresh connection next time
    return std::nullopt;
  }
  std::lock_guard lock(readers_mutex_);
  readers_.push_back(std::move(reader));
  return found;
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

namespace {

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
    const auto key = parse_client(column_text(select.getColumn(1)));
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
      const auto key = column_key(stmt.getColumn(0));
      if (!key) continue;
      const std::string_view n = column_text(stmt.getColumn(1));
      if (!node.empty() && n != node) continue;
      fn(AffinityRowView{cluster, *key, n, stmt.getColumn(2).getInt64(),
                         stmt.getColumn(3).getInt64(), stmt.getColumn(4).getInt64()});
    }
    stmt.reset();
  };
  constexpr const char* kColumns = "SELECT client, node, first_seen, last_seen, connections ";
  if (!client) {
    SQLite::Statement all(db, std::string(kColumns) +
                                  "FROM affinity WHERE cluster = ?1 ORDER BY client");
    all.bind(1, cluster);
    emit(all);
    return;
  }
  SQLite::Statement point(db, std::string(kColumns) +
                                  "FROM affinity WHERE cluster = ?1 AND client = ?2");
  point.bind(1, cluster);
  for (int p = 0; p < client->prefix; ++p) {
    bind_key(point, 2, client->widened(static_cast<std::uint8_t>(p)));
    emit(point);
  }
  SQLite::Statement range(db, std::string(kColumns) +
                                  "FROM affinity WHERE cluster = ?1 AND client >= ?2 "
                                  "AND client <= ?3 ORDER BY client");
  range.bind(1, cluster);
  bind_key(range, 2, *client);
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
    const int version = db.execAndGet("PRAGMA user_version").getInt();
    if (version > static_cast<int>(migrations().size())) {
      throw SchemaTooNew(too_new_message(db_file, version, migrations().size(), "pbadmin"));
    }
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

std::optional<std::vector<AffinityRow>> read_affinity_file(const std::filesystem::path& db_file,
                                                           std::string_view cluster,
                                                           std::string_view node) {
  std::vector<AffinityRow> rows;
  const bool found =
      stream_affinity_file(db_file, cluster, node, std::nullopt, [&](const AffinityRowView& r) {
        rows.push_back(AffinityRow{std::string(r.cluster), r.key.to_string(), std::string(r.node),
                                   r.first_seen, r.last_seen, r.connections});
      });
  if (!found) return std::nullopt;
  return rows;
}

}  // namespace pb::affinity
