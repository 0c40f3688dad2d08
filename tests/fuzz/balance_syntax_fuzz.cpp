// libFuzzer target for quick mode's balance syntax (config/quick_syntax.hpp). The input is a
// command line: arguments separated by NUL bytes or whitespace. Checks what must hold for any
// input: the parser returns (no crash, no sanitizer report) and its result is consistent.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "protobalance/config/quick_syntax.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::vector<std::string> args;
  std::string current;
  for (std::size_t i = 0; i < size; ++i) {
    const char c = static_cast<char>(data[i]);
    if (c == '\0' || c == ' ' || c == '\n' || c == '\t') {
      if (!current.empty()) args.push_back(std::move(current));
      current.clear();
    } else {
      current.push_back(c);
    }
  }
  if (!current.empty()) args.push_back(std::move(current));

  const auto result = pb::config::parse_balance_line(args);
  if (const auto* line = std::get_if<pb::config::QuickLine>(&result)) {
    // Every node is one argument, tiers start at 1 and never decrease, one `hashed` per tier.
    if (line->nodes.empty()) std::abort();
    std::uint32_t tier = 1;
    for (const auto& node : line->nodes) {
      if (node.tier < tier || node.tier > line->hashed.size()) std::abort();
      if (node.argument >= args.size() || args[node.argument] != node.text) std::abort();
      if (node.host.empty() || !(node.load_factor > 0)) std::abort();
      if (node.port && *node.port == 0) std::abort();
      tier = node.tier;
    }
    if (line->nodes.back().tier != line->hashed.size()) std::abort();
    (void)pb::config::quick_algorithm(*line, std::nullopt);
    (void)pb::config::quick_algorithm(*line, std::string("random"));
  }
  return 0;
}
