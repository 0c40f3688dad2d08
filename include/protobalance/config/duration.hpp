#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "protobalance/config/config.hpp"

namespace pb::config {

// Parses "250ms", "3s", "5m", "1h", "30d" (a non-negative integer and one unit; "0s" is zero).
// Returns nullopt for anything else, including overflow.
std::optional<Duration> parse_duration(std::string_view text);

// Formats a duration in the largest unit that divides it exactly ("90s", "2h", "250ms").
std::string format_duration(Duration d);

// A wall-clock time as UTC text to the second: "2026-11-21T19:45:03Z".
std::string format_utc(std::int64_t unix_seconds);

}  // namespace pb::config
