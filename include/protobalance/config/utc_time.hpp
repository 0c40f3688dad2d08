#pragma once

#include <cstdint>
#include <string>

namespace pb::config {

// Unix seconds as ISO 8601 UTC text, "2026-11-21T19:45:03Z": the time format of the admin API's
// documents and of pbadmin's output. Falls back to the plain number when the time cannot be
// represented.
std::string format_utc(std::int64_t unix_seconds);

}  // namespace pb::config
