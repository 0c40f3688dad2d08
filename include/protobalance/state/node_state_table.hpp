#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "protobalance/state/prepared_statements.hpp"

namespace pb::state {

// Persisted run-time state of one node: what an operator set with `pbadmin node set`, and since
// when the node is unavailable (so a restart does not hammer a node known to be down).
struct NodeStateRow {
  std::string cluster;
  std::string node;
  std::string admin_state;                // available|draining|offline; empty = none set
  std::int64_t unavailable_since_ms = 0;  // unix milliseconds; 0 = up
  std::int64_t failures = 0;

  friend bool operator==(const NodeStateRow&, const NodeStateRow&) = default;
};

// Changes of the node_state table (queued on the write-behind queue).
struct PutAdminState {
  std::string cluster;
  std::string node;
  std::string admin_state;  // empty = none set (the config's initial state applies again)
};
struct PutAvailability {
  std::string cluster;
  std::string node;
  std::int64_t unavailable_since_ms = 0;
  std::int64_t failures = 0;
};

// The node_state table: one row per (cluster, node); the admin state and the availability are
// written independently, each keeping the other column as it is.
class NodeStateTable {
 public:
  // Every row. Throws SQLite::Exception when the table cannot be read.
  static std::vector<NodeStateRow> load(SQLite::Database& db);

  // Writes changes inside the caller's transaction; the statements are prepared once.
  class Writer {
   public:
    explicit Writer(SQLite::Database& db);
    void write(const PutAdminState& change);
    void write(const PutAvailability& change);

   private:
    PreparedStatements statements_;
  };
};

}  // namespace pb::state
