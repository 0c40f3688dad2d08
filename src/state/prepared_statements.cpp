#include "protobalance/state/prepared_statements.hpp"

#include <SQLiteCpp/SQLiteCpp.h>

namespace pb::state {

PreparedStatements::PreparedStatements(SQLite::Database& db,
                                       std::initializer_list<const char*> sql) {
  statements_.reserve(sql.size());
  for (const char* text : sql) statements_.push_back(std::make_unique<SQLite::Statement>(db, text));
}

PreparedStatements::~PreparedStatements() = default;

}  // namespace pb::state
