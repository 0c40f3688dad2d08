#include "protobalance/state/node_state_table.hpp"

#include <SQLiteCpp/SQLiteCpp.h>

#include "sqlite_values.hpp"

namespace pb::state {

std::vector<NodeStateRow> NodeStateTable::load(SQLite::Database& db) {
  std::vector<NodeStateRow> rows;
  SQLite::Statement select(db,
                           "SELECT cluster, node, coalesce(admin_state, ''), unavailable_since, "
                           "failures FROM node_state");
  while (select.executeStep()) {
    rows.push_back(NodeStateRow{select.getColumn(0).getString(), select.getColumn(1).getString(),
                                select.getColumn(2).getString(), select.getColumn(3).getInt64(),
                                select.getColumn(4).getInt64()});
  }
  return rows;
}

NodeStateTable::Writer::Writer(SQLite::Database& db)
    : statements_(
          db, {"INSERT INTO node_state (cluster, node, admin_state) VALUES (?1, ?2, ?3) "
               "ON CONFLICT (cluster, node) DO UPDATE SET admin_state = excluded.admin_state",
               "INSERT INTO node_state (cluster, node, unavailable_since, failures) "
               "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (cluster, node) DO UPDATE SET "
               "unavailable_since = excluded.unavailable_since, failures = excluded.failures"}) {}

void NodeStateTable::Writer::write(const PutAdminState& change) {
  // No admin state set is NULL: the configuration's initial state applies.
  sql::execute(statements_[0], change.cluster, change.node,
               change.admin_state.empty() ? std::nullopt : std::optional(change.admin_state));
}

void NodeStateTable::Writer::write(const PutAvailability& change) {
  sql::execute(statements_[1], change.cluster, change.node, change.unavailable_since_ms,
               change.failures);
}

}  // namespace pb::state
