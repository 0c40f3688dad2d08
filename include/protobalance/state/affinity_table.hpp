#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protobalance/affinity/entry_store.hpp"
#include "protobalance/state/database.hpp"
#include "protobalance/state/prepared_statements.hpp"

namespace pb::state {

// Changes of the affinity table (queued on the write-behind queue).
struct PutAffinity {
  affinity::AffinityRow row;
};
struct EraseAffinity {
  std::string cluster;
  std::string client;
};

struct AffinityTableOptions {
  // One expiry step scans at most expiry_chunk rows, so it holds the database for no more than
  // a few tens of milliseconds even at ten million entries.
  std::size_t expiry_chunk = 20'000;
  // Expiry steps per delete_expired(): a large table is swept over several calls (a cursor
  // remembers where the last step stopped), keeping the writer's background cost bounded.
  std::size_t expiry_steps = 8;
};

// The affinity table of the database: one row per (cluster, client key), the key stored as its
// 17-byte binary form (ClientKey::to_blob) so that a network's entries are one index range.
//
// Reads that may run while the writer writes (the start-up load, the point look-ups of a map
// still loading) use read-only connections of their own: in WAL mode they are not blocked by
// the writer.
class AffinityTable {
 public:
  explicit AffinityTable(Database& db, AffinityTableOptions options = {});
  ~AffinityTable();
  AffinityTable(const AffinityTable&) = delete;
  AffinityTable& operator=(const AffinityTable&) = delete;

  // Streams the rows unexpired under `ttls` (every row without TTLs) in (cluster, client)
  // order through a read-only connection. Opens (and migrates) the file first if it is not
  // open. `fn` returns false to stop. Returns the number of rows passed to `fn`; rows whose
  // client is not a valid key are skipped and counted in `*skipped`.
  std::size_t for_each(const std::optional<affinity::TtlTable>& ttls,
                       const std::function<bool(const affinity::AffinityRowView&)>& fn,
                       std::size_t* skipped);
  // Rows per cluster; empty when the file cannot be read (it is only a hint).
  std::map<std::string, std::size_t, std::less<>> count();
  // The stored entry of one client: an indexed point query on a pooled read-only connection,
  // abandoned (nullopt) when it takes longer than `budget` or the database cannot be read.
  // Thread-safe.
  std::optional<affinity::StoredEntry> find(std::string_view cluster,
                                            const affinity::ClientKey& key,
                                            std::chrono::microseconds budget);

  // With the database's mutex held and the database open: deletes expired rows in bounded
  // steps from where the last call stopped; `all` runs until the table is done. Failures go to
  // the database (logged, counted).
  void delete_expired(const affinity::TtlTable& ttls, bool all = false);

  // Writes changes inside the caller's transaction; the statements are prepared once.
  class Writer {
   public:
    explicit Writer(SQLite::Database& db);
    // A row whose client is not an address is skipped: the map could never look it up.
    void write(const PutAffinity& change);
    void write(const EraseAffinity& change);

   private:
    PreparedStatements statements_;
  };

 private:
  struct Reader;
  // One bounded step: false when the cursor reached the end of the table.
  bool delete_expired_step(const affinity::TtlTable& ttls, affinity::Clock::time_point now);

  Database& db_;
  AffinityTableOptions options_;

  // Where the expiry sweep continues: the last (cluster, client blob) it covered; empty cluster
  // = from the start. Used with the database's mutex held.
  std::string expiry_cluster_;
  std::vector<std::uint8_t> expiry_client_;

  std::mutex readers_mutex_;
  std::vector<std::unique_ptr<Reader>> readers_;  // idle read-only connections (find)
};

}  // namespace pb::state
