#include "protobalance/state/route_table.hpp"

#include <SQLiteCpp/SQLiteCpp.h>

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
    : put_(std::make_unique<SQLite::Statement>(
          db,
          "INSERT OR REPLACE INTO listener_route (listener, cluster, set_at) "
          "VALUES (?1, ?2, ?3)")),
      erase_(std::make_unique<SQLite::Statement>(
          db, "DELETE FROM listener_route WHERE listener = ?1")) {}

RouteTable::Writer::~Writer() = default;

void RouteTable::Writer::write(const PutRoute& change) {
  if (change.cluster.empty()) {
    erase_->bind(1, change.listener);
    erase_->exec();
    erase_->reset();
    return;
  }
  put_->bind(1, change.listener);
  put_->bind(2, change.cluster);
  put_->bind(3, change.set_at);
  put_->exec();
  put_->reset();
}

}  // namespace pb::state
