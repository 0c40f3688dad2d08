// Fuzz target: a configuration file's text through everything `protobalance --check` runs on it
// (TOML parsing, every key, duration, address and path, then each algorithm's own validation,
// e.g. min_load's load_rating expression and hash's hash_key). A load either yields a config
// or diagnostics; it must never crash, leak or trip a sanitizer.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "protobalance/balance/algorithm.hpp"
#include "protobalance/config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  pb::config::LoadResult result = pb::config::load_string(text, "fuzz.toml", "/nonexistent-fuzz");
  if (result.config) {
    // What control::load_config adds to load_file.
    pb::balance::validate(*result.config, result.errors);
  } else if (result.errors.empty()) {
    std::abort();  // a refused file must say why
  }
  for (const auto& error : result.errors) {
    if (error.to_string().empty()) std::abort();
  }
  return 0;
}
