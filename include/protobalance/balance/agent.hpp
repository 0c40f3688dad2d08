#pragma once

// The agent protocol ([cluster.agent]): an agent on each node's host answers a connection with one
// line that says how the node is and how loaded it is. Compatible with HAProxy's agent-check where
// the two overlap.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protobalance/balance/node.hpp"

namespace pb::balance {

// What one reply line says. Fields a reply does not mention are empty: they leave the node's
// previous value as it was.
struct AgentReply {
  std::optional<bool> up;                       // "up" -> true, "down" -> false
  std::optional<AdminState> state;              // "ready", "drain", "maint"
  std::optional<std::uint32_t> weight_percent;  // "NN%" (0 to 1000)
  std::vector<AgentValue> values;               // "name=value", in the order given
  // Not empty when the line is garbled (an unknown word, a bad number, an empty line): then
  // nothing else is set and nothing of it is to be applied.
  std::string error;
};

// Parses one reply line (a trailing "\r\n" or "\n" is ignored). Words are separated by commas,
// spaces or tabs and are case-insensitive: up, down, ready, drain, maint, NN%, name=value. A name
// is [A-Za-z_][A-Za-z0-9_]* (at most 64 characters) and not one of the built-in load_rating
// variables; a value is a finite decimal number. At most 64 values; a later word overrides an
// earlier one of the same kind. Never throws; allocates only for the result.
AgentReply parse_agent_reply(std::string_view line);

}  // namespace pb::balance
