#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

// The one-line syntax of the classic `balance` tool, accepted by quick mode:
//
//   protobalance --listen 0.0.0.0:8080 alpha::256 ! beta::64 ! failover
//   protobalance --listen 0.0.0.0:8080 alpha:8081 beta:8081 %
//   protobalance --listen 0.0.0.0:8080 alpha:8081:256:3
//
// Every argument is a node, `!` or `%`. A node is HOST[:PORT[:MAX_CONNECTIONS[:LOAD_FACTOR]]]
// (IPv6 hosts in brackets: [2001:db8::1]:8081:256); an empty field keeps its default (port: the
// listening port; max_connections: 0 = unlimited; load_factor: 1). `!` ends a group; the groups
// become tiers 1, 2, 3... (a later group takes connections only when no node of the earlier ones
// can). `%` ends a group too and makes it a hash group: the client address chooses the node.
// Parsing is pure (no name resolution); main.cpp resolves the addresses afterwards.
namespace pb::config {

struct QuickNode {
  std::string host;                   // without brackets
  bool bracketed = false;             // written as [IPv6]
  std::optional<std::uint16_t> port;  // nullopt: the listening port
  std::uint32_t max_connections = 0;  // 0 = unlimited
  double load_factor = 1.0;
  std::uint32_t tier = 1;    // 1-based group number
  std::size_t argument = 0;  // index into the parsed arguments
  std::string text;          // the argument as written

  // "host:port" or "[host]:port", as parse_endpoint() reads it.
  std::string address(std::uint16_t listening_port) const;
};

struct QuickLine {
  std::vector<QuickNode> nodes;  // in the order given; tiers never decrease
  // Per tier (index 0 = tier 1): whether the group ended with `%`.
  std::vector<bool> hashed;

  bool any_hashed() const;
};

// What is wrong, and with which argument (as written, e.g. "beta::x" or "--algorithm random";
// empty when no argument is to blame, e.g. no node at all). Printed as "ARGUMENT: MESSAGE".
struct QuickSyntaxError {
  std::string argument;
  std::string message;

  std::string to_string() const;
};

// Parses the arguments after the options. Empty input is an error (no node), as are an empty
// group (`a ! ! b`, a leading or trailing `!`), `%` without a group before it, too many fields,
// ports outside 1..65535, max_connections that is not a whole number, and a load factor that is
// not a number in (0, 1000000].
std::variant<QuickLine, QuickSyntaxError> parse_balance_line(const std::vector<std::string>& args);

// The built-in key of `%` groups (and of `--algorithm hash` in quick mode) when --hash-key is not
// given: the 16 ASCII bytes "protobalance-key", i.e. 70726f746f62616c616e63652d6b6579. Fixed, so
// that two balancers started with the same line send a client to the same node.
inline constexpr std::string_view kQuickHashKeyHex = "70726f746f62616c616e63652d6b6579";

// 32 hex digits -> 16 bytes, or what is wrong with the text.
std::variant<std::array<std::uint8_t, 16>, std::string> parse_hash_key_hex(std::string_view hex);

// The algorithm of the quick-mode cluster. `requested` is --algorithm when given.
// Our clusters have one algorithm for all their tiers, so a line with `%` means "hash" for the
// whole cluster; that is only what the operator asked for when every group either ends with `%`
// or has a single node (one candidate: every algorithm picks it, e.g. `a b % ! failover`).
// Anything else is refused, with the argument to blame: a group of several nodes without `%`
// next to a `%` group, or --algorithm other than hash on a line with `%`.
std::variant<std::string, QuickSyntaxError> quick_algorithm(
    const QuickLine& line, const std::optional<std::string>& requested);

}  // namespace pb::config
