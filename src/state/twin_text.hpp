#pragma once

// The text of the twin link's wire format (twin_link.hpp, "Wire format"): hex client keys,
// whitespace-separated words and Unix times in seconds. Shared by the record parser
// (twin_record.cpp) and the link (twin_link.cpp); a private header: only src/state includes it.

#include <chrono>
#include <cstdint>
#include <exception>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace pb::state::twin_text {

using SystemTime = std::chrono::system_clock::time_point;

// The version the first word of every value and message holds.
constexpr int kFormatVersion = 1;

// Lower-case hex of any bytes (an affinity map's binary client key).
inline std::string hex(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (const char c : bytes) {
    const auto b = static_cast<unsigned char>(c);
    out += kDigits[b >> 4];
    out += kDigits[b & 0xf];
  }
  return out;
}

// The bytes of lower-case hex (what hex() writes); nullopt for an odd length or another character.
inline std::optional<std::string> unhex(std::string_view text) {
  if (text.size() % 2 != 0) {
    return std::nullopt;
  }
  auto value = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  std::string out;
  out.reserve(text.size() / 2);
  for (std::size_t i = 0; i < text.size(); i += 2) {
    const int hi = value(text[i]);
    const int lo = value(text[i + 1]);
    if (hi < 0 || lo < 0) {
      return std::nullopt;
    }
    out += static_cast<char>((hi << 4) | lo);
  }
  return out;
}

// The words of `text`, split at any run of white space.
inline std::vector<std::string> split(std::string_view text) {
  std::vector<std::string> words;
  std::istringstream in{std::string(text)};
  std::string w;
  while (in >> w) {
    words.push_back(std::move(w));
  }
  return words;
}

// A whole word as a decimal integer ("-5", "+7" and "007" too); nullopt for anything else,
// also a number beyond 64 bits.
inline std::optional<std::int64_t> to_int(const std::string& s) {
  try {
    std::size_t used = 0;
    const long long v = std::stoll(s, &used);
    return used == s.size() ? std::optional<std::int64_t>(v) : std::nullopt;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

inline std::int64_t to_unix(SystemTime t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

// The time point of `seconds` since the Unix epoch; nullopt beyond what the system clock can
// hold (about the years 1678 to 2262 with its nanoseconds): converting such a number would
// overflow.
inline std::optional<SystemTime> from_unix(std::int64_t seconds) {
  constexpr std::int64_t kLimit =
      std::chrono::duration_cast<std::chrono::seconds>(SystemTime::duration::max()).count();
  if (seconds > kLimit || seconds < -kLimit) {
    return std::nullopt;
  }
  return SystemTime{std::chrono::seconds(seconds)};
}

// A word holding a Unix time in seconds; nullopt when it is not one the clock can hold.
inline std::optional<SystemTime> unix_time(const std::string& word) {
  const auto seconds = to_int(word);
  return seconds ? from_unix(*seconds) : std::nullopt;
}

}  // namespace pb::state::twin_text
