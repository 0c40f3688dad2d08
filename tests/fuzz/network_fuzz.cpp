// libFuzzer target for the network parser (config/network.hpp: `trusted_proxies`, `allow`,
// `deny`, the block list, pbadmin block's argument and PUT /v1/blocks). Checks what must hold for
// any input: the parser returns (no crash, no sanitizer report), exactly one of value and error is
// set, and a parsed network's text parses back to the same network.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "protobalance/config/network.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto parsed = pb::config::parse_network(text);
  if (parsed.network.has_value() == !parsed.error.empty()) std::abort();
  if (!parsed.network) return 0;
  if (parsed.network->prefix > 128) std::abort();
  const auto again = pb::config::parse_network(parsed.network->to_string());
  if (!again.network || !(*again.network == *parsed.network)) std::abort();
  return 0;
}
