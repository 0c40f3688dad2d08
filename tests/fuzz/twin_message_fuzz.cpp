// libFuzzer target for the twin link's message parser (state/twin_record.hpp): a text published
// on the twins' channel, which every balancer of the twin set and anyone else with access to
// Redis may have sent. The whole input is the text. Checks, for any input: no crash, no
// sanitizer report, no exception (one escaping aborts); and for a text that parses: the sender
// and kind are the text's second and third words, and the message written again with
// twin_message_text parses to the same message, whose text is the same again.
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

std::string_view letter(TwinMessage::Kind kind) {
  switch (kind) {
    case TwinMessage::Kind::affinity:
      return "a";
    case TwinMessage::Kind::pin:
      return "p";
    case TwinMessage::Kind::forget:
      return "f";
    case TwinMessage::Kind::node_state:
      return "n";
    case TwinMessage::Kind::route:
      return "r";
    case TwinMessage::Kind::block:
      return "b";
    case TwinMessage::Kind::unblock:
      return "u";
  }
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const auto message = pb::state::parse_twin_message(text);
  if (!message) return 0;

  const std::vector<std::string_view> words = words_of(text);
  check(words.size() >= 4 && words[0] == "1");
  check(message->instance == words[1]);
  check(letter(message->kind) == words[2]);
  if (message->kind == TwinMessage::Kind::route) {
    check(message->name == words[3] && message->target == (words.size() == 5 ? words[4] : ""));
  }

  const std::string written = pb::state::twin_message_text(*message);
  const auto again = pb::state::parse_twin_message(written);
  check(again.has_value() && *again == *message);
  check(pb::state::twin_message_text(*again) == written);
  return 0;
}
