#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "protobalance/state/prepared_statements.hpp"

namespace pb::state {

// One entry of the block list set at run time (`pbadmin block`): new connections from
// `network` to `listener` (empty: every listener) are refused until `expires`.
struct BlockRow {
  std::string network;       // canonical text: "192.0.2.7", "192.0.2.0/24", "2001:db8::/32"
  std::string listener;      // empty = every listener
  std::int64_t created = 0;  // unix seconds
  std::int64_t expires = 0;  // unix seconds; 0 = until unblocked

  // True when the block no longer applies at `now_unix_seconds`.
  bool expired(std::int64_t now_unix_seconds) const {
    return expires != 0 && expires <= now_unix_seconds;
  }
  friend bool operator==(const BlockRow&, const BlockRow&) = default;
};

// Changes of the block table (queued on the write-behind queue).
struct PutBlock {
  BlockRow row;
};
struct EraseBlock {
  std::string network;
  std::string listener;
};

// The block table: one row per (network, listener).
class BlockTable {
 public:
  // Every row, in (network, listener) order. Throws SQLite::Exception when the table cannot be
  // read.
  static std::vector<BlockRow> load(SQLite::Database& db);

  // Writes changes inside the caller's transaction; the statements are prepared once.
  class Writer {
   public:
    explicit Writer(SQLite::Database& db);
    void write(const PutBlock& change);
    void write(const EraseBlock& change);

   private:
    PreparedStatements statements_;
  };
};

// Reads the block table of a database file from another process (pbadmin), read-only, so it
// works while the balancer writes and while it is down. Rows expired at `now_unix_seconds` are
// left out (the balancer deletes them, but may not have yet). nullopt when the file does not
// exist or holds no block table yet; throws SchemaTooNew when a newer release wrote it and
// std::runtime_error ("PATH: reason") when it cannot be read.
std::optional<std::vector<BlockRow>> read_block_file(const std::filesystem::path& db_file,
                                                     std::int64_t now_unix_seconds);

}  // namespace pb::state
