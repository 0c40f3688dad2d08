#include "protobalance/state/twin_record.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <vector>

#include "twin_text.hpp"

namespace pb::state {

using twin_text::hex;
using twin_text::kFormatVersion;
using twin_text::split;
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

}  // namespace pb::state
