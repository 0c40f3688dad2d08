#pragma once

// Conversions between SQLite values and the product's types, shared by the state area's tables
// (a private header: only src/state includes it).

#include <SQLiteCpp/SQLiteCpp.h>
#include <sqlite3.h>

#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protobalance/affinity/client_key.hpp"

namespace pb::state::sql {

// SQLiteCpp reports either the primary or the extended result code; the low byte is the primary.
inline int primary_code(const SQLite::Exception& e) {
  const int code = e.getErrorCode() >= 0 ? e.getErrorCode() : e.getExtendedErrorCode();
  return code & 0xFF;
}

// True when `e` says the file is damaged (or not a database at all).
inline bool is_corruption(const std::exception& e) {
  const auto* sqlite_error = dynamic_cast<const SQLite::Exception*>(&e);
  if (sqlite_error == nullptr) return false;
  const int code = primary_code(*sqlite_error);
  return code == SQLITE_CORRUPT || code == SQLITE_NOTADB;
}

inline void bind_key(SQLite::Statement& stmt, int index, const affinity::ClientKey& key) {
  const auto blob = key.to_blob();
  stmt.bind(index, blob.data(), static_cast<int>(blob.size()));
}

// Binds one value of a prepared statement: text or an integer.
inline void bind_value(SQLite::Statement& stmt, int index, const std::string& text) {
  stmt.bind(index, text);
}
inline void bind_value(SQLite::Statement& stmt, int index, std::int64_t number) {
  stmt.bind(index, number);
}
inline void bind_value(SQLite::Statement& stmt, int index, const affinity::ClientKey& key) {
  bind_key(stmt, index, key);
}

// Binds `value` or NULL when it is empty.
template <class Value>
void bind_value(SQLite::Statement& stmt, int index, const std::optional<Value>& value) {
  if (value) {
    bind_value(stmt, index, *value);
  } else {
    stmt.bind(index);
  }
}

// Runs a prepared write statement once with `values` bound to ?1, ?2, ... in order, then resets
// it for the next change: the body of every table writer's write().
template <class... Values>
void execute(SQLite::Statement& stmt, const Values&... values) {
  int index = 0;
  (bind_value(stmt, ++index, values), ...);
  stmt.exec();
  stmt.reset();
}

// A blob, also when empty (a null pointer would bind NULL, which compares as unknown).
inline void bind_bytes(SQLite::Statement& stmt, int index, const std::vector<std::uint8_t>& bytes) {
  static const std::uint8_t kNone = 0;
  stmt.bind(index, bytes.empty() ? &kNone : bytes.data(), static_cast<int>(bytes.size()));
}

inline std::optional<affinity::ClientKey> column_key(const SQLite::Column& column) {
  return affinity::ClientKey::from_blob(column.getBlob(),
                                        static_cast<std::size_t>(column.getBytes()));
}

inline std::string_view column_text(const SQLite::Column& column) {
  return std::string_view(column.getText(), static_cast<std::size_t>(column.getBytes()));
}

}  // namespace pb::state::sql
