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
    : admin_(std::make_unique<SQLite::Statement>(
          db,
          "INSERT INTO node_state (cluster, node, admin_state) VALUES (?1, ?2, ?3) "
          "ON CONFLICT (cluster, node) DO UPDATE SET admin_state = excluded.admin_state")),
      availability_(std::make_unique<SQLite::Statement>(
          db,
          "INSERT INTO node_state (cluster, node, unavailable_since, failures) "
          "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (cluster, node) DO UPDATE SET "
          "unavailable_since = excluded.unavailable_since, failures = excluded.failures")) {}

NodeStateTable::Writer::~Writer() = default;

void NodeStateTable::Writer::write(const PutAdminState& change) {
  admin_->bind(1, change.cluster);
  admin_->bind(2, change.node);
  sql::bind_text_or_null(*admin_, 3, change.admin_state);
  admin_->exec();
  admin_->reset();
}

void NodeStateTable::Writer::write(const PutAvailability& change) {
  availability_->bind(1, change.cluster);
  availability_->bind(2, change.node);
  availability_->bind(3, change.unavailable_since_ms);
  availability_->bind(4, change.failures);
  availability_->exec();
  availability_->reset();
}

}  // namespace pb::state
