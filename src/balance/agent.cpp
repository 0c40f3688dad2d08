#include "protobalance/balance/agent.hpp"

#include <charconv>
#include <cmath>

namespace pb::balance {
namespace {

constexpr std::size_t kMaxValues = 64;
constexpr std::size_t kMaxNameLength = 64;
constexpr std::uint32_t kMaxPercent = 1000;

// The names load_rating defines itself (see min_load.cpp): an agent cannot redefine them.
constexpr std::string_view kBuiltIn[] = {"connections", "load_factor", "total", "failures",
                                         "latency_ms"};

bool is_separator(char c) {
  return c == ',' || c == ' ' || c == '\t';
}

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool equals_word(std::string_view word, std::string_view keyword) {
  if (word.size() != keyword.size()) return false;
  for (std::size_t i = 0; i < word.size(); ++i) {
    if (lower(word[i]) != keyword[i]) return false;
  }
  return true;
}

bool is_name(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  const auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; };
  if (!alpha(name.front())) return false;
  for (const char c : name) {
    if (!alpha(c) && !(c >= '0' && c <= '9')) return false;
  }
  return true;
}

// Printable and short, for an error message about what the agent sent.
std::string quoted(std::string_view text) {
  std::string out = "'";
  for (const char c : text.substr(0, 40)) {
    out += c >= 0x20 && c < 0x7f ? c : '?';
  }
  if (text.size() > 40) out += "...";
  return out + "'";
}

AgentReply garbled(std::string message) {
  AgentReply reply;
  reply.error = std::move(message);
  return reply;
}

}  // namespace

AgentReply parse_agent_reply(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  AgentReply reply;
  bool any = false;
  std::size_t pos = 0;
  while (pos < line.size()) {
    if (is_separator(line[pos])) {
      ++pos;
      continue;
    }
    std::size_t end = pos;
    while (end < line.size() && !is_separator(line[end])) ++end;
    const std::string_view word = line.substr(pos, end - pos);
    pos = end;
    any = true;

    if (equals_word(word, "up")) {
      reply.up = true;
    } else if (equals_word(word, "down")) {
      reply.up = false;
    } else if (equals_word(word, "ready")) {
      reply.state = AdminState::available;
    } else if (equals_word(word, "drain")) {
      reply.state = AdminState::draining;
    } else if (equals_word(word, "maint")) {
      reply.state = AdminState::offline;
    } else if (word.back() == '%') {
      std::uint32_t percent = 0;
      const std::string_view digits = word.substr(0, word.size() - 1);
      const auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), percent);
      if (digits.empty() || ec != std::errc{} || ptr != digits.data() + digits.size() ||
          percent > kMaxPercent) {
        return garbled("weight " + quoted(word) + " is not a whole percentage from 0% to 1000%");
      }
      reply.weight_percent = percent;
    } else if (const auto eq = word.find('='); eq != std::string_view::npos) {
      const std::string_view name = word.substr(0, eq);
      const std::string_view text = word.substr(eq + 1);
      if (!is_name(name)) return garbled("value name " + quoted(name) + " is not a name");
      for (const std::string_view built_in : kBuiltIn) {
        if (name == built_in) return garbled("value name " + quoted(name) + " is a built-in variable");
      }
      double value = 0.0;
      const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
      if (text.empty() || ec != std::errc{} || ptr != text.data() + text.size() ||
          !std::isfinite(value)) {
        return garbled("value of " + std::string(name) + " " + quoted(text) + " is not a number");
      }
      bool replaced = false;
      for (auto& v : reply.values) {
        if (v.name == name) {
          v.value = value;
          replaced = true;
        }
      }
      if (!replaced) {
        if (reply.values.size() == kMaxValues) return garbled("more than 64 values");
        reply.values.push_back(AgentValue{std::string(name), value});
      }
    } else {
      return garbled("unknown word " + quoted(word));
    }
  }
  if (!any) return garbled("empty reply");
  return reply;
}

}  // namespace pb::balance
