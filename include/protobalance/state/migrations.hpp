#pragma once

#include <string_view>
#include <vector>

namespace pb::state {

// One forward-only schema step from migrations/NNNN_what.sql, embedded at build time.
// Migration i (0-based, in file-name order) brings the schema to PRAGMA user_version i + 1.
struct Migration {
  std::string_view file;
  std::string_view sql;
};

const std::vector<Migration>& migrations();

// The schema version from which affinity.client is the 17-byte binary key (migrations/0003);
// before, it was the client's text form.
inline constexpr int kBinaryKeyVersion = 3;

}  // namespace pb::state
