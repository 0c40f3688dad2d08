#include "protobalance/config/quick_syntax.hpp"

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <system_error>

namespace pb::config {

namespace {

constexpr std::string_view kFields = "HOST[:PORT[:MAX_CONNECTIONS[:LOAD_FACTOR]]]";
constexpr double kMaxLoadFactor = 1000000.0;

bool all_digits(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// A whole decimal number no greater than `max`, or nullopt.
std::optional<std::uint64_t> parse_unsigned(std::string_view text, std::uint64_t max) {
  if (text.empty() || !all_digits(text)) return std::nullopt;
  std::uint64_t value = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || end != text.data() + text.size() || value > max) return std::nullopt;
  return value;
}

// Splits at every ':' (the fields after the host).
std::vector<std::string_view> split_fields(std::string_view text) {
  std::vector<std::string_view> fields;
  for (;;) {
    const std::size_t colon = text.find(':');
    fields.push_back(text.substr(0, colon));
    if (colon == std::string_view::npos) return fields;
    text.remove_prefix(colon + 1);
  }
}

// One node argument. `fields` are PORT, MAX_CONNECTIONS, LOAD_FACTOR as far as written.
std::variant<QuickNode, std::string> parse_node(std::string_view text) {
  QuickNode node;
  node.text = std::string(text);
  std::vector<std::string_view> fields;
  if (!text.empty() && text.front() == '[') {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos) {
      return std::string("'[' without ']': write IPv6 nodes as [2001:db8::1]:8081");
    }
    node.host = std::string(text.substr(1, close - 1));
    node.bracketed = true;
    const std::string_view rest = text.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') {
        return fmt::format("expected ':' after ']', got '{}'", rest.front());
      }
      fields = split_fields(rest.substr(1));
    }
    if (node.host.empty()) return std::string("empty IPv6 address between '[' and ']'");
  } else {
    // "2001:db8::1" would otherwise read as host "2001", port "db8"...
    in6_addr v6{};
    if (::inet_pton(AF_INET6, node.text.c_str(), &v6) == 1) {
      return fmt::format("IPv6 addresses need brackets: [{}] or [{}]:PORT", text, text);
    }
    fields = split_fields(text);
    node.host = std::string(fields.front());
    fields.erase(fields.begin());
    if (node.host.empty()) return fmt::format("a node needs a host: {}", kFields);
  }
  if (fields.size() > 3) {
    return fmt::format("too many ':' fields; a node is {} (IPv6 hosts in brackets: "
                       "[2001:db8::1]:8081)",
                       kFields);
  }
  if (!fields.empty() && !fields[0].empty()) {
    const auto port = parse_unsigned(fields[0], 65535);
    if (!port || *port == 0) return fmt::format("port must be 1..65535, got '{}'", fields[0]);
    node.port = static_cast<std::uint16_t>(*port);
  }
  if (fields.size() > 1 && !fields[1].empty()) {
    const auto max = parse_unsigned(fields[1], 0xFFFFFFFFULL);
    if (!max) {
      return fmt::format("max_connections must be a whole number 0..4294967295 (0 = unlimited), "
                         "got '{}'",
                         fields[1]);
    }
    node.max_connections = static_cast<std::uint32_t>(*max);
  }
  if (fields.size() > 2 && !fields[2].empty()) {
    const std::string_view lf = fields[2];
    double value = 0;
    const auto [end, ec] = std::from_chars(lf.data(), lf.data() + lf.size(), value);
    if (ec != std::errc{} || end != lf.data() + lf.size() || !std::isfinite(value) ||
        value <= 0 || value > kMaxLoadFactor) {
      return fmt::format("load_factor must be a number greater than 0 and at most 1000000, got '{}'",
                         lf);
    }
    node.load_factor = value;
  }
  return node;
}

}  // namespace

std::string QuickNode::address(std::uint16_t listening_port) const {
  const std::uint16_t p = port.value_or(listening_port);
  return bracketed ? fmt::format("[{}]:{}", host, p) : fmt::format("{}:{}", host, p);
}

bool QuickLine::any_hashed() const {
  return std::find(hashed.begin(), hashed.end(), true) != hashed.end();
}

std::string QuickSyntaxError::to_string() const {
  return argument.empty() ? message : argument + ": " + message;
}

std::variant<QuickLine, QuickSyntaxError> parse_balance_line(const std::vector<std::string>& args) {
  QuickLine line;
  std::uint32_t tier = 1;
  std::size_t in_group = 0;  // nodes in the group being read
  bool after_percent = false;  // the previous argument was `%` (a `!` right after it is allowed)
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "!") {
      if (after_percent) {  // `a b % ! c`: the `%` already ended the group
        after_percent = false;
        continue;
      }
      if (in_group == 0) {
        return QuickSyntaxError{arg, i == 0 ? "a line cannot start with '!': put nodes before it"
                                            : "empty group: two separators in a row"};
      }
      line.hashed.push_back(false);
      ++tier;
      in_group = 0;
      continue;
    }
    after_percent = false;
    if (arg == "%") {
      if (in_group == 0) {
        return QuickSyntaxError{arg, "'%' must follow the nodes of the group to hash"};
      }
      line.hashed.push_back(true);
      ++tier;
      in_group = 0;
      after_percent = true;
      continue;
    }
    auto parsed = parse_node(arg);
    if (auto* error = std::get_if<std::string>(&parsed)) {
      return QuickSyntaxError{arg, std::move(*error)};
    }
    QuickNode node = std::move(std::get<QuickNode>(parsed));
    node.tier = tier;
    node.argument = i;
    line.nodes.push_back(std::move(node));
    ++in_group;
  }
  if (line.nodes.empty()) {
    return QuickSyntaxError{{}, "no node given"};
  }
  if (in_group == 0 && !after_percent) {
    return QuickSyntaxError{args.back(), "a line cannot end with '!': put nodes after it"};
  }
  if (in_group > 0) line.hashed.push_back(false);
  return line;
}

std::variant<std::array<std::uint8_t, 16>, std::string> parse_hash_key_hex(std::string_view hex) {
  if (hex.size() != 32) {
    return fmt::format("a hash key is 32 hex digits (16 bytes), got {} characters", hex.size());
  }
  std::array<std::uint8_t, 16> key{};
  for (std::size_t i = 0; i < hex.size(); ++i) {
    const char c = hex[i];
    int digit = -1;
    if (c >= '0' && c <= '9') digit = c - '0';
    if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
    if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
    if (digit < 0) {
      return fmt::format("a hash key is 32 hex digits; '{}' at offset {} is not a hex digit", c, i);
    }
    key[i / 2] = static_cast<std::uint8_t>(key[i / 2] * 16 + digit);
  }
  return key;
}

std::variant<std::string, QuickSyntaxError> quick_algorithm(
    const QuickLine& line, const std::optional<std::string>& requested) {
  if (!line.any_hashed()) return requested.value_or("round_robin");
  if (requested && *requested != "hash") {
    return QuickSyntaxError{
        "--algorithm " + *requested,
        "a line with '%' uses the hash algorithm for the whole cluster; drop --algorithm or "
        "the '%'"};
  }
  for (std::size_t t = 0; t < line.hashed.size(); ++t) {
    if (line.hashed[t]) continue;
    const auto tier = static_cast<std::uint32_t>(t + 1);
    std::vector<const QuickNode*> group;
    for (const auto& node : line.nodes) {
      if (node.tier == tier) group.push_back(&node);
    }
    if (group.size() > 1) {
      return QuickSyntaxError{
          group.front()->text,
          fmt::format("group {} has several nodes and no '%', but another group has '%': a "
                      "cluster has one algorithm for all its groups, so end every group of "
                      "several nodes with '%', or none",
                      tier)};
    }
  }
  return std::string("hash");
}

}  // namespace pb::config
