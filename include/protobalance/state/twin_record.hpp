#pragma once

// The records the twin link keeps in Redis and the messages it publishes there (twin_link.hpp,
// "Wire format"), apart from the link: what a record's key and value or a message's text say,
// and the key, value and text a change is written with. Redis is shared, so a record or a
// message may hold anything; the parsers take any bytes and refuse what is not of this format
// (tests/fuzz/twin_record_fuzz.cpp and twin_message_fuzz.cpp check it, and that what parsed,
// written again, parses to the same message).

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace pb::state {

using SystemTime = std::chrono::system_clock::time_point;

// One client's affinity: the client key is the binary key of the affinity map (any bytes).
struct AffinityEntry {
  std::string cluster;
  std::string key;
  std::string node;
  SystemTime last_seen;
  std::chrono::seconds ttl{0};  // how long the entry lives after last_seen (the cluster's ttl)

  bool operator==(const AffinityEntry&) const = default;
};

// What a twin told us, or what the re-read after an outage found.
struct TwinMessage {
  enum class Kind : std::uint8_t { affinity, pin, forget, node_state, route, block, unblock };
  Kind kind = Kind::affinity;
  std::string instance;    // who wrote it
  AffinityEntry affinity;  // affinity, pin, forget (forget: cluster and key only)
  std::string cluster;     // node_state
  std::string node;        // node_state
  std::string state;       // node_state: available|draining|offline
  std::string name;        // route: the route's name; block/unblock: the subject (address/CIDR)
  std::string target;      // route: where it points; empty = reset
  SystemTime until;        // block: until when (epoch = no end)

  bool operator==(const TwinMessage&) const = default;
};

// The message a record tells: `key` is the record's key without the link's prefix ("a:...",
// "n:...", "r:...", "b:..."), `value` its value, `ttl` what Redis's TTL answered for it
// (seconds left; -1 without expiry, -2 gone). The kind is affinity, node_state, route or block.
// Returns nullopt for anything else: another version, a missing or extra word, an unknown key,
// an affinity key whose client part is not lower-case hex, a LAST_SEEN that is not a Unix time
// the system clock can hold. A block's UNTIL that is not such a time counts as 0 (no end): a
// damaged block record still blocks. An affinity's ttl is `ttl`, 0 when negative.
std::optional<TwinMessage> parse_twin_record(std::string_view key, std::string_view value,
                                             std::int64_t ttl);

// The key (without the link's prefix) of the record `m` writes or deletes: affinity, pin and
// forget "a:CLUSTER:HEXKEY"; node_state "n:CLUSTER:NODE"; route "r:NAME"; block and unblock
// "b:SUBJECT".
std::string twin_record_key(const TwinMessage& m);

// The value of the record `m` writes, with m.instance as the writer: affinity and pin
// "1 NODE LAST_SEEN INSTANCE", node_state "1 STATE INSTANCE", route "1 TARGET INSTANCE",
// block "1 UNTIL INSTANCE". Empty for the changes that delete the record: forget, unblock and a
// route reset (empty target).
std::string twin_record_value(const TwinMessage& m);

// The message a text on the twins' channel tells: "1 INSTANCE KIND FIELDS..." (twin_link.hpp,
// "Wire format"), any kind. Returns nullopt for another version, an unknown kind, a field too
// few or too many, a client key that is not lower-case hex, a LAST_SEEN that is not a Unix time
// the system clock can hold or a TTL that is not a whole number. A block's UNTIL that is not
// such a time counts as 0 (no end), as in a record.
std::optional<TwinMessage> parse_twin_message(std::string_view text);

// The text `m` is published as, with m.instance as the sender: affinity "a" and pin "p"
// CLUSTER HEXKEY NODE LAST_SEEN TTL; forget "f" CLUSTER HEXKEY; node_state "n" CLUSTER NODE STATE;
// route "r" NAME [TARGET] (none: reset); block "b" SUBJECT UNTIL; unblock "u" SUBJECT.
std::string twin_message_text(const TwinMessage& m);

}  // namespace pb::state
