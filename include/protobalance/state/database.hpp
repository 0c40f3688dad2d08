#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <string_view>

namespace SQLite {
class Database;
}  // namespace SQLite

namespace pb::state {

// Thrown when the database was written by a newer release: its schema (PRAGMA user_version) is
// beyond the migrations this binary knows, so using it could lose or misread data.
class SchemaTooNew : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// The schema version of `db` (the file `file`). Throws SchemaTooNew, naming `who` ("balancer",
// "pbadmin") in the message, when it is newer than the embedded migrations.
int schema_version(SQLite::Database& db, const std::filesystem::path& file, std::string_view who);

struct DatabaseOptions {
  // How long one statement waits for a lock held by another connection.
  std::chrono::milliseconds busy_timeout{5000};
  // How often the owner retries after a failure (said in the log message of a failure).
  std::chrono::milliseconds retry_interval{5000};
};

// The balancer's connection to `state_dir/protobalance.db`: opening, migrating, checking and
// recovering from corruption. Tables are not its business (state/*_table.hpp own them).
//
// Opening creates state_dir if needed, applies the embedded migrations (migrations/*.sql) in
// order, each in its own transaction, tracked with PRAGMA user_version, and runs the database in
// WAL mode with synchronous=NORMAL, so a committed transaction survives a crash of the process
// (not necessarily a power loss), and pbadmin can read while the balancer writes.
//
// Faults never reach the caller as exceptions: a failure is logged once per cause at error
// level, counted in write_errors(), and the connection is closed so that the next ensure_open()
// retries. A corrupt file is renamed to protobalance.db.corrupt-YYYYmmddTHHMMSSZ (with its -wal
// and -shm) and a fresh database is created in its place.
//
// Thread safety: the members marked so run with mutex() held; healthy() and write_errors() are
// for any thread.
class Database {
 public:
  static constexpr std::string_view kFileName = "protobalance.db";
  // Files up to this size are checked (quick_check) when opened; larger ones later, by
  // run_pending_check() on the writer thread, while the balancer already serves.
  static constexpr std::uintmax_t kQuickCheckAtOpenBytes = 32 * 1024 * 1024;

  explicit Database(std::filesystem::path state_dir, DatabaseOptions options = {});
  ~Database();
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  const std::filesystem::path& path() const { return path_; }
  const DatabaseOptions& options() const { return options_; }
  std::mutex& mutex() { return mutex_; }

  // With mutex() held: opens (and migrates) the file unless it is open. False when that failed
  // (logged and counted). `refuse_newer`: a database of a newer schema throws SchemaTooNew
  // instead (at start-up, where the balancer must not run on it).
  bool ensure_open(bool refuse_newer = false);
  // With mutex() held, after ensure_open() returned true: the open connection.
  SQLite::Database& connection() { return *db_; }
  bool is_open() const { return db_ != nullptr; }
  // With mutex() held: the integrity check of a file too large to check at open, once. The
  // connection is closed afterwards when it failed.
  void run_pending_check();
  // With mutex() held: deals with `e`, thrown by a statement on this file (on this connection
  // or a read-only one): corruption moves the file aside and opens a fresh one; anything else is
  // a failure to `what` ("cannot read").
  void handle_error(std::string_view what, const std::exception& e);
  // With mutex() held: closes the connection and renames the file (and its -wal, -shm) aside;
  // false when the rename failed.
  bool recover_from_corruption(std::string_view what);
  // With mutex() held: records a failure: closes the connection (the retry reopens it), counts
  // it, and logs it unless it is the same cause as the previous failure.
  void fail(std::string_view what, const std::exception& e);
  // With mutex() held: records a success (logs the recovery after a failure).
  void succeeded();

  // True when the database is open and the last write succeeded.
  bool healthy() const { return healthy_.load(std::memory_order_relaxed); }
  // Failed attempts to open or write the database, since start.
  std::uint64_t write_errors() const { return write_errors_.load(std::memory_order_relaxed); }

 private:
  void open_and_migrate();

  std::filesystem::path state_dir_;
  std::filesystem::path path_;
  DatabaseOptions options_;

  std::mutex mutex_;
  std::unique_ptr<SQLite::Database> db_;
  std::string last_cause_;      // of the last logged failure; empty while healthy
  bool check_pending_ = false;  // the file was too large to check at open

  std::atomic<bool> healthy_{false};
  std::atomic<std::uint64_t> write_errors_{0};
};

}  // namespace pb::state
