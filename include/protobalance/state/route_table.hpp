#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "protobalance/state/prepared_statements.hpp"

namespace pb::state {

// A listener redirected at run time (`pbadmin route`); an empty cluster removes the override.
struct PutRoute {
  std::string listener;
  std::string cluster;
  std::int64_t set_at = 0;  // unix seconds
};

// The listener_route table: the route overrides an operator set, kept across restarts.
class RouteTable {
 public:
  // Every override: listener -> cluster. Throws SQLite::Exception when it cannot be read.
  static std::map<std::string, std::string> load(SQLite::Database& db);

  // Writes changes inside the caller's transaction; the statements are prepared once.
  class Writer {
   public:
    explicit Writer(SQLite::Database& db);
    void write(const PutRoute& change);

   private:
    PreparedStatements statements_;
  };
};

}  // namespace pb::state
