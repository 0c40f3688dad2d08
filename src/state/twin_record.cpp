#include "protobalance/state/twin_record.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "twin_text.hpp"

namespace pb::state {

using twin_text::hex;
using twin_text::kFormatVersion;
using twin_text::split;
using twin_text::to_int;
using twin_text::to_unix;
using twin_text::unhex;
using twin_text::unix_time;

std::optional<TwinMessage> parse_twin_record(std::string_view key, std::string_view value,
                                             std::int64_t ttl) {
  const std::vector<std::string> v = split(value);
  if (key.size() < 2 || key[1] != ':' || v.empty() || v[0] != "1") {
    return std::nullopt;
  }
  const std::string_view rest = key.substr(2);
  TwinMessage m;
  if (key[0] == 'a' && v.size() == 4) {
    const std::size_t colon = rest.rfind(':');
    auto bytes = colon == std::string::npos ? std::nullopt : unhex(rest.substr(colon + 1));
    const auto seen = unix_time(v[2]);
    if (!bytes || !seen) {
      return std::nullopt;
    }
    m.kind = TwinMessage::Kind::affinity;
    m.affinity = {std::string(rest.substr(0, colon)), std::move(*bytes), v[1], *seen,
                  std::chrono::seconds(std::max<std::int64_t>(ttl, 0))};
    m.instance = v[3];
  } else if (key[0] == 'n' && v.size() == 3) {
    const std::size_t colon = rest.find(':');
    if (colon == std::string::npos) {
      return std::nullopt;
    }
    m.kind = TwinMessage::Kind::node_state;
    m.cluster = rest.substr(0, colon);
    m.node = rest.substr(colon + 1);
    m.state = v[1];
    m.instance = v[2];
  } else if (key[0] == 'r' && v.size() == 3) {
    m.kind = TwinMessage::Kind::route;
    m.name = rest;
    m.target = v[1];
    m.instance = v[2];
  } else if (key[0] == 'b' && v.size() == 3) {
    m.kind = TwinMessage::Kind::block;
    m.name = rest;
    m.until = unix_time(v[1]).value_or(SystemTime{});
    m.instance = v[2];
  } else {
    return std::nullopt;
  }
  return m;
}

std::string twin_record_key(const TwinMessage& m) {
  switch (m.kind) {
    case TwinMessage::Kind::affinity:
    case TwinMessage::Kind::pin:
    case TwinMessage::Kind::forget:
      return fmt::format("a:{}:{}", m.affinity.cluster, hex(m.affinity.key));
    case TwinMessage::Kind::node_state:
      return fmt::format("n:{}:{}", m.cluster, m.node);
    case TwinMessage::Kind::route:
      return fmt::format("r:{}", m.name);
    case TwinMessage::Kind::block:
    case TwinMessage::Kind::unblock:
      return fmt::format("b:{}", m.name);
  }
  return {};
}

std::string twin_record_value(const TwinMessage& m) {
  switch (m.kind) {
    case TwinMessage::Kind::affinity:
    case TwinMessage::Kind::pin:
      return fmt::format("{} {} {} {}", kFormatVersion, m.affinity.node,
                         to_unix(m.affinity.last_seen), m.instance);
    case TwinMessage::Kind::node_state:
      return fmt::format("{} {} {}", kFormatVersion, m.state, m.instance);
    case TwinMessage::Kind::route:
      return m.target.empty() ? std::string{}
                              : fmt::format("{} {} {}", kFormatVersion, m.target, m.instance);
    case TwinMessage::Kind::block:
      return fmt::format("{} {} {}", kFormatVersion, to_unix(m.until), m.instance);
    case TwinMessage::Kind::forget:
    case TwinMessage::Kind::unblock:
      return {};
  }
  return {};
}

std::optional<TwinMessage> parse_twin_message(std::string_view text) {
  const std::vector<std::string> w = split(text);
  if (w.size() < 3 || w[0] != "1") {
    return std::nullopt;
  }
  TwinMessage m;
  m.instance = w[1];
  const std::string& kind = w[2];
  const std::size_t n = w.size() - 3;
  auto at = [&](std::size_t i) -> const std::string& { return w[3 + i]; };
  if ((kind == "a" || kind == "p") && n == 5) {
    auto bytes = unhex(at(1));
    const auto seen = unix_time(at(3));
    const auto ttl = to_int(at(4));
    if (!bytes || !seen || !ttl) {
      return std::nullopt;
    }
    m.kind = kind == "a" ? TwinMessage::Kind::affinity : TwinMessage::Kind::pin;
    m.affinity = {at(0), std::move(*bytes), at(2), *seen, std::chrono::seconds(*ttl)};
  } else if (kind == "f" && n == 2) {
    auto bytes = unhex(at(1));
    if (!bytes) {
      return std::nullopt;
    }
    m.kind = TwinMessage::Kind::forget;
    m.affinity.cluster = at(0);
    m.affinity.key = std::move(*bytes);
  } else if (kind == "n" && n == 3) {
    m.kind = TwinMessage::Kind::node_state;
    m.cluster = at(0);
    m.node = at(1);
    m.state = at(2);
  } else if (kind == "r" && (n == 1 || n == 2)) {
    m.kind = TwinMessage::Kind::route;
    m.name = at(0);
    m.target = n == 2 ? at(1) : std::string{};
  } else if (kind == "b" && n == 2) {
    m.kind = TwinMessage::Kind::block;
    m.name = at(0);
    m.until = unix_time(at(1)).value_or(SystemTime{});
  } else if (kind == "u" && n == 1) {
    m.kind = TwinMessage::Kind::unblock;
    m.name = at(0);
  } else {
    return std::nullopt;
  }
  return m;
}

std::string twin_message_text(const TwinMessage& m) {
  const auto text = [&](std::string_view kind, const std::string& fields) {
    return fmt::format("{} {} {} {}", kFormatVersion, m.instance, kind, fields);
  };
  const AffinityEntry& e = m.affinity;
  switch (m.kind) {
    case TwinMessage::Kind::affinity:
    case TwinMessage::Kind::pin:
      return text(m.kind == TwinMessage::Kind::pin ? "p" : "a",
                  fmt::format("{} {} {} {} {}", e.cluster, hex(e.key), e.node,
                              to_unix(e.last_seen), e.ttl.count()));
    case TwinMessage::Kind::forget:
      return text("f", fmt::format("{} {}", e.cluster, hex(e.key)));
    case TwinMessage::Kind::node_state:
      return text("n", fmt::format("{} {} {}", m.cluster, m.node, m.state));
    case TwinMessage::Kind::route:
      return text("r", m.target.empty() ? m.name : fmt::format("{} {}", m.name, m.target));
    case TwinMessage::Kind::block:
      return text("b", fmt::format("{} {}", m.name, to_unix(m.until)));
    case TwinMessage::Kind::unblock:
      return text("u", m.name);
  }
  return {};
}

}  // namespace pb::state
