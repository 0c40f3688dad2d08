#include "protobalance/state/route_table.hpp"

#include <SQLiteCpp/SQLiteCpp.h>

#include "sqlite_values.hpp"

namespace pb::state {

std::map<std::string, std::string> RouteTable::load(SQLite::Database& db) {
  std::map<std::string, std::string> routes;
  SQLite::Statement select(db, "SELECT listener, cluster FROM listener_route");
  while (select.executeStep()) {
    routes.emplace(select.getColumn(0).getString(), select.getColumn(1).getString());
  }
  return routes;
}

RouteTable::Writer::Writer(SQLite::Database& db)
    : statements_(db, {"INSERT OR REPLACE INTO listener_route (listener, cluster, set_at) "
                       "VALUES (?1, ?2, ?3)",
                       "DELETE FROM listener_route WHERE listener = ?1"}) {}

void RouteTable::Writer::write(const PutRoute& change) {
  if (change.cluster.empty()) {
    sql::execute(statements_[1], change.listener);
    return;
  }
  sql::execute(statements_[0], change.listener, change.cluster, change.set_at);
}

}  // namespace pb::state
