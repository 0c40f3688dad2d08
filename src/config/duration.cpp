#include "protobalance/config/duration.hpp"

#include <array>
#include <cstdint>
#include <ctime>
#include <limits>

namespace pb::config {

namespace {

struct Unit {
  std::string_view suffix;
  std::int64_t millis;
};

// Largest first, so that format_duration picks the coarsest unit that divides exactly.
// "ms" must be tested before "m" when parsing, which the exact suffix comparison below ensures.
constexpr std::array<Unit, 5> kUnits{{
    {"d", 24LL * 60 * 60 * 1000},
    {"h", 60LL * 60 * 1000},
    {"m", 60LL * 1000},
    {"s", 1000},
    {"ms", 1},
}};

}  // namespace

std::optional<Duration> parse_duration(std::string_view text) {
  std::size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
    ++digits;
  }
  // No sign, no fraction, no space: the digits must be followed directly by a known unit.
  if (digits == 0) {
    return std::nullopt;
  }
  const std::string_view suffix = text.substr(digits);
  const Unit* unit = nullptr;
  for (const Unit& u : kUnits) {
    if (u.suffix == suffix) {
      unit = &u;
    }
  }
  if (unit == nullptr) {
    return std::nullopt;
  }

  constexpr std::int64_t kMax = std::numeric_limits<Duration::rep>::max();
  std::int64_t count = 0;
  for (const char c : text.substr(0, digits)) {
    const std::int64_t digit = c - '0';
    if (count > (kMax - digit) / 10) {
      return std::nullopt;
    }
    count = count * 10 + digit;
  }
  if (count > kMax / unit->millis) {
    return std::nullopt;
  }
  return Duration{count * unit->millis};
}

std::string format_duration(Duration d) {
  const std::int64_t count = d.count();
  if (count == 0) {
    return "0s";
  }
  // Work on the magnitude as unsigned so that the most negative value does not overflow.
  const bool negative = count < 0;
  const std::uint64_t magnitude = negative ? std::uint64_t{0} - static_cast<std::uint64_t>(count)
                                           : static_cast<std::uint64_t>(count);
  std::string out = negative ? "-" : "";
  for (const Unit& u : kUnits) {
    const auto unit_millis = static_cast<std::uint64_t>(u.millis);
    if (magnitude % unit_millis == 0) {
      out += std::to_string(magnitude / unit_millis);
      out += u.suffix;
      return out;
    }
  }
  return out;  // unreachable: every count is a whole number of milliseconds
}

std::string format_utc(std::int64_t unix_seconds) {
  const auto t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return std::to_string(unix_seconds);
  char text[32];
  const std::size_t n = std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return std::string(text, n);
}

}  // namespace pb::config
