// libFuzzer target for the twin link's record parser (state/twin_record.hpp): a record read back
// from Redis, which every balancer of the twin set and anyone else with access to Redis may have
// written. The input is KEY "\n" VALUE "\n" TTL: the first line is the key (without the prefix),
// the last line the TTL Redis answered (a decimal number; -1 when it is not one), the lines
// between the value (so a value may hold line breaks; with one line break, the rest is the value
// and the TTL -1). Checks, for any input: no crash, no sanitizer report, no exception (one
// escaping aborts); and for a record that parses: its fields are what the key and value said
// (the kind is the key's letter, the key written again is the key read, the words of the value
// are the state, target or node and the instance), and the record written again with
// twin_record_value parses to the same message.
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "protobalance/state/twin_record.hpp"
#include "words.hpp"

namespace {

using pb::fuzz::check;
using pb::fuzz::words_of;
using pb::state::TwinMessage;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t first = input.find('\n');
  const std::string_view key = input.substr(0, first);
  std::string_view value;
  std::int64_t ttl = -1;
  if (first != std::string_view::npos) {
    const std::size_t last = input.rfind('\n');
    if (last == first) {
      value = input.substr(first + 1);
    } else {
      value = input.substr(first + 1, last - first - 1);
      const std::string_view ttl_text = input.substr(last + 1);
      std::int64_t parsed = 0;
      const auto [end, error] =
          std::from_chars(ttl_text.data(), ttl_text.data() + ttl_text.size(), parsed);
      if (error == std::errc{} && end == ttl_text.data() + ttl_text.size()) ttl = parsed;
    }
  }

  const auto message = pb::state::parse_twin_record(key, value, ttl);
  if (!message) return 0;

  // What the key and value said.
  const std::vector<std::string_view> words = words_of(value);
  check(words.size() >= 3 && words[0] == "1" && key.size() >= 2 && key[1] == ':');
  check(message->instance == words.back());
  check(pb::state::twin_record_key(*message) == key);
  switch (message->kind) {
    case TwinMessage::Kind::affinity:
      check(key[0] == 'a' && words.size() == 4 && message->affinity.node == words[1]);
      check(message->affinity.ttl.count() == (ttl < 0 ? 0 : ttl));
      break;
    case TwinMessage::Kind::node_state:
      check(key[0] == 'n' && words.size() == 3 && message->state == words[1]);
      break;
    case TwinMessage::Kind::route:
      check(key[0] == 'r' && words.size() == 3 && message->target == words[1]);
      check(message->name == key.substr(2));
      break;
    case TwinMessage::Kind::block:
      check(key[0] == 'b' && words.size() == 3 && message->name == key.substr(2));
      break;
    default:
      std::abort();  // a record is never a pin, forget or unblock: those are messages only
  }

  // Written again (as the link writes it), it parses to the same message, and writing that
  // gives the same text.
  const std::string written = pb::state::twin_record_value(*message);
  const auto again = pb::state::parse_twin_record(key, written, ttl);
  check(again.has_value() && *again == *message);
  check(pb::state::twin_record_value(*again) == written);
  return 0;
}
