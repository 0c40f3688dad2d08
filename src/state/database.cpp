#include "protobalance/state/database.hpp"

#include <SQLiteCpp/SQLiteCpp.h>
#include <spdlog/spdlog.h>
#include <sqlite3.h>

#include <algorithm>
#include <ctime>
#include <system_error>
#include <utility>

#include "protobalance/state/migrations.hpp"
#include "sqlite_values.hpp"

namespace pb::state {
namespace {

using SteadyClock = std::chrono::steady_clock;

// Thrown when PRAGMA quick_check finds a damaged file that SQLite itself still opens.
class CorruptionFound : public SQLite::Exception {
 public:
  explicit CorruptionFound(const std::string& detail)
      : SQLite::Exception("integrity check failed: " + detail, SQLITE_CORRUPT) {}
};

// "20261121T194503Z", for the name a corrupt file is moved to.
std::string utc_stamp(std::chrono::system_clock::time_point t) {
  const std::time_t secs = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char text[32];
  const std::size_t n = std::strftime(text, sizeof text, "%Y%m%dT%H%M%SZ", &tm);
  return std::string(text, n);
}

// pb_client_key(text): the binary key of a client's text form, NULL when it does not parse.
// Registered on the writer's connection for migrations/0003 (SQLite has no address functions).
void sql_client_key(sqlite3_context* ctx, int /*argc*/, sqlite3_value** argv) {
  const auto* text = sqlite3_value_text(argv[0]);
  if (text == nullptr) {
    sqlite3_result_null(ctx);
    return;
  }
  const auto key = affinity::parse_client(std::string_view(
      reinterpret_cast<const char*>(text), static_cast<std::size_t>(sqlite3_value_bytes(argv[0]))));
  if (!key) {
    sqlite3_result_null(ctx);
    return;
  }
  const auto blob = key->to_blob();
  sqlite3_result_blob(ctx, blob.data(), static_cast<int>(blob.size()), SQLITE_TRANSIENT);
}

// PRAGMA quick_check: throws (as corruption) when the file is damaged.
void quick_check(SQLite::Database& db) {
  SQLite::Statement check(db, "PRAGMA quick_check(1)");
  if (check.executeStep()) {
    const std::string verdict = check.getColumn(0).getString();
    if (verdict != "ok") throw CorruptionFound(verdict);
  }
}

long long elapsed_ms(SteadyClock::time_point started) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - started)
      .count();
}

}  // namespace

int schema_version(SQLite::Database& db, const std::filesystem::path& file, std::string_view who) {
  const int version = db.execAndGet("PRAGMA user_version").getInt();
  const std::size_t known = migrations().size();
  if (version > static_cast<int>(known)) {
    throw SchemaTooNew(file.string() + ": database schema version " + std::to_string(version) +
                       " is newer than this " + std::string(who) + " knows (" +
                       std::to_string(known) +
                       "): it was written by a newer Proto Balance release; refusing to use it "
                       "(run that release, or move the file aside to start with an empty "
                       "database)");
  }
  return version;
}

Database::Database(std::filesystem::path state_dir, DatabaseOptions options)
    : state_dir_(std::move(state_dir)), path_(state_dir_ / kFileName), options_(options) {}

Database::~Database() = default;

bool Database::ensure_open(bool refuse_newer) {
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
    if (!sql::is_corruption(e)) {
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

void Database::open_and_migrate() {
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
  const int version = schema_version(*db, path_, "balancer");
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
    spdlog::info("affinity store: {}: applied migration {} in {} ms", path_.string(), all[i].file,
                 elapsed_ms(started));
    if (version > 0 && static_cast<int>(i + 1) == kBinaryKeyVersion) rewrote_affinity = true;
  }
  if (rewrote_affinity) {
    // The text-keyed table's pages are free now; give them back so the file shrinks to the new
    // size (a one-time cost of the upgrade).
    const auto started = SteadyClock::now();
    db->exec("VACUUM");
    spdlog::info("affinity store: {}: compacted in {} ms", path_.string(), elapsed_ms(started));
  }
  db_ = std::move(db);
}

void Database::run_pending_check() {
  if (!check_pending_ || !db_) return;
  check_pending_ = false;
  const auto started = SteadyClock::now();
  try {
    quick_check(*db_);
    spdlog::info("affinity store: {}: integrity check passed in {} ms", path_.string(),
                 elapsed_ms(started));
  } catch (const std::exception& e) {
    handle_error("cannot check", e);
  }
}

void Database::handle_error(std::string_view what, const std::exception& e) {
  if (!sql::is_corruption(e)) {
    fail(what, e);
    return;
  }
  if (recover_from_corruption(e.what())) ensure_open();
}

bool Database::recover_from_corruption(std::string_view what) {
  db_.reset();
  const std::string stamp = utc_stamp(std::chrono::system_clock::now());
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

void Database::fail(std::string_view what, const std::exception& e) {
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

void Database::succeeded() {
  if (!last_cause_.empty()) {
    spdlog::info("affinity store: {} works again", path_.string());
    last_cause_.clear();
  }
  healthy_.store(true, std::memory_order_relaxed);
}

}  // namespace pb::state
