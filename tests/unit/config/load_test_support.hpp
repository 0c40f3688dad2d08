#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <sstream>
#include <string>
#include <string_view>

#include "protobalance/config/config.hpp"

namespace pb::config::test {

// Loads TOML text as if it were the file /etc/pb/test.toml.
inline LoadResult load(std::string_view text) {
  return load_string(text, "test.toml", "/etc/pb");
}

inline std::string describe(const LoadResult& result) {
  std::ostringstream out;
  for (const Diagnostic& d : result.errors) {
    out << "  " << d.to_string() << "\n";
  }
  return out.str();
}

// Succeeds when loading failed with exactly one diagnostic, at line:column, whose message contains
// `needle`; otherwise the failure message lists every diagnostic.
inline ::testing::AssertionResult single_error(const LoadResult& result, std::uint32_t line,
                                               std::uint32_t column, std::string_view needle) {
  if (result.config != nullptr) {
    return ::testing::AssertionFailure() << "the configuration loaded without errors";
  }
  if (result.errors.size() != 1) {
    return ::testing::AssertionFailure()
           << "expected 1 error, got " << result.errors.size() << ":\n"
           << describe(result);
  }
  const Diagnostic& d = result.errors.front();
  if (d.file != "test.toml" || d.pos.line != line || d.pos.column != column ||
      d.message.find(needle) == std::string::npos) {
    return ::testing::AssertionFailure() << "expected test.toml:" << line << ":" << column
                                         << ": ..." << needle << "...\n got " << d.to_string();
  }
  return ::testing::AssertionSuccess();
}

// Succeeds when the diagnostic at `index` is at line:column and its message contains `needle`.
inline ::testing::AssertionResult error_at(const LoadResult& result, std::size_t index,
                                           std::uint32_t line, std::uint32_t column,
                                           std::string_view needle) {
  if (index >= result.errors.size()) {
    return ::testing::AssertionFailure() << "no error #" << index << "; errors:\n"
                                         << describe(result);
  }
  const Diagnostic& d = result.errors[index];
  if (d.pos.line != line || d.pos.column != column || d.message.find(needle) == std::string::npos) {
    return ::testing::AssertionFailure()
           << "error #" << index << ": expected " << line << ":" << column << ": ..." << needle
           << "...\n got " << d.to_string() << "\nall:\n"
           << describe(result);
  }
  return ::testing::AssertionSuccess();
}

}  // namespace pb::config::test
