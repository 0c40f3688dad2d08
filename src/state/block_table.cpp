#include "protobalance/state/block_table.hpp"

#include <SQLiteCpp/SQLiteCpp.h>

#include <stdexcept>
#include <system_error>

#include "protobalance/state/database.hpp"
#include "sqlite_values.hpp"

namespace pb::state {
namespace {

std::optional<std::int64_t> nullable(std::int64_t expires) {
  return expires == 0 ? std::nullopt : std::optional<std::int64_t>(expires);
}

}  // namespace

std::vector<BlockRow> BlockTable::load(SQLite::Database& db) {
  std::vector<BlockRow> rows;
  SQLite::Statement select(db,
                           "SELECT network, listener, created, coalesce(expires, 0) FROM block "
                           "ORDER BY network, listener");
  while (select.executeStep()) {
    rows.push_back(BlockRow{select.getColumn(0).getString(), select.getColumn(1).getString(),
                            select.getColumn(2).getInt64(), select.getColumn(3).getInt64()});
  }
  return rows;
}

BlockTable::Writer::Writer(SQLite::Database& db)
    : statements_(db, {"INSERT OR REPLACE INTO block (network, listener, created, expires) "
                       "VALUES (?1, ?2, ?3, ?4)",
                       "DELETE FROM block WHERE network = ?1 AND listener = ?2"}) {}

void BlockTable::Writer::write(const PutBlock& change) {
  sql::execute(statements_[0], change.row.network, change.row.listener, change.row.created,
               nullable(change.row.expires));
}

void BlockTable::Writer::write(const EraseBlock& change) {
  sql::execute(statements_[1], change.network, change.listener);
}

std::optional<std::vector<BlockRow>> read_block_file(const std::filesystem::path& db_file,
                                                     std::int64_t now_unix_seconds) {
  std::error_code ec;
  if (!std::filesystem::exists(db_file, ec)) return std::nullopt;
  try {
    SQLite::Database db(db_file.string(), SQLite::OPEN_READONLY, 2000);
    schema_version(db, db_file, "pbadmin");
    if (!db.tableExists("block")) return std::nullopt;
    std::vector<BlockRow> rows = BlockTable::load(db);
    std::erase_if(rows, [&](const BlockRow& row) { return row.expired(now_unix_seconds); });
    return rows;
  } catch (const SchemaTooNew&) {
    throw;
  } catch (const std::exception& e) {
    throw std::runtime_error(db_file.string() + ": " + e.what());
  }
}

}  // namespace pb::state
