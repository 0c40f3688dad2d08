#pragma once

// Helpers of the fuzz targets for the twin link's texts (twin_record_fuzz.cpp,
// twin_message_fuzz.cpp): the words of a text split independently of the parser under test,
// and a check that aborts (a finding) when a property does not hold.
#include <cctype>
#include <cstddef>
#include <cstdlib>
#include <string_view>
#include <vector>

namespace pb::fuzz {

// The words of `text`, split at runs of white space.
inline std::vector<std::string_view> words_of(std::string_view text) {
  std::vector<std::string_view> words;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i])) != 0) ++i;
    const std::size_t start = i;
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i])) == 0) ++i;
    if (i > start) words.push_back(text.substr(start, i - start));
  }
  return words;
}

inline void check(bool holds) {
  if (!holds) std::abort();
}

}  // namespace pb::fuzz
