// libFuzzer target for the agent reply parser: any bytes an agent (or anyone on its port) may
// send. Checks that parsing never crashes and that a garbled reply carries nothing to apply.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "protobalance/balance/agent.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  const pb::balance::AgentReply reply = pb::balance::parse_agent_reply(line);
  if (!reply.error.empty() &&
      (reply.up || reply.state || reply.weight_percent || !reply.values.empty())) {
    std::abort();
  }
  if (reply.values.size() > 64) std::abort();
  if (reply.weight_percent && *reply.weight_percent > 1000) std::abort();
  return 0;
}
