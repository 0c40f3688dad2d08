#pragma once

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <vector>

namespace SQLite {
class Database;
class Statement;
}  // namespace SQLite

namespace pb::state {

// The prepared write statements of one table's Writer (state/*_table.hpp): prepared once per
// write transaction, then run once per change (sql::execute binds and resets).
class PreparedStatements {
 public:
  // Prepares each of `sql` on `db`, in order. Throws SQLite::Exception when one does not compile.
  PreparedStatements(SQLite::Database& db, std::initializer_list<const char*> sql);
  ~PreparedStatements();
  PreparedStatements(const PreparedStatements&) = delete;
  PreparedStatements& operator=(const PreparedStatements&) = delete;

  // The statement at `index` in the constructor's list.
  SQLite::Statement& operator[](std::size_t index) { return *statements_[index]; }

 private:
  std::vector<std::unique_ptr<SQLite::Statement>> statements_;
};

}  // namespace pb::state
