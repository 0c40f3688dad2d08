#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>

namespace SQLite {
class Database;
class Statement;
}  // namespace SQLite

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
    ~Writer();
    Writer(const Writer&) = delete;
    Writer& operator=(const Writer&) = delete;
    void write(const PutRoute& change);

   private:
    std::unique_ptr<SQLite::Statement> put_;
    std::unique_ptr<SQLite::Statement> erase_;
  };
};

}  // namespace pb::state
