#include "protobalance/pbadmin/top_view.hpp"

#include <boost/json/array.hpp>
#include <boost/json/value.hpp>
#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <string_view>
#include <utility>

namespace pb::pbadmin {
namespace {

namespace json = boost::json;

std::string string_field(const json::object& object, std::string_view key) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr) return {};
  if (const auto* s = value->if_string()) return std::string(*s);
  return {};
}

// Counters are integers in the document; a double (or a negative number) is read as best it can
// be, anything else as 0.
double number_field(const json::object& object, std::string_view key) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr) return 0;
  if (value->is_int64()) return static_cast<double>(value->as_int64());
  if (value->is_uint64()) return static_cast<double>(value->as_uint64());
  if (value->is_double()) return value->as_double();
  return 0;
}

std::int64_t int_field(const json::object& object, std::string_view key) {
  const double d = number_field(object, key);
  if (!std::isfinite(d) || d < -9.2e18 || d > 9.2e18) return 0;
  return static_cast<std::int64_t>(d);
}

std::uint64_t count_field(const json::object& object, std::string_view key) {
  const double d = number_field(object, key);
  if (!std::isfinite(d) || d <= 0 || d > 1.8e19) return 0;
  return static_cast<std::uint64_t>(d);
}

bool bool_field(const json::object& object, std::string_view key, bool fallback) {
  const json::value* value = object.if_contains(key);
  return value != nullptr && value->is_bool() ? value->as_bool() : fallback;
}

const json::array* array_field(const json::object& object, std::string_view key) {
  const json::value* value = object.if_contains(key);
  return value == nullptr ? nullptr : value->if_array();
}

// The counters a rate is computed from, per listener or node.
struct Counters {
  double connections = 0;
  double bytes = 0;
};

using NodeKey = std::pair<std::string, std::string>;  // cluster, node

void collect(const json::object& status, std::map<std::string, Counters>* listeners,
             std::map<NodeKey, Counters>* nodes, TopFrame* frame) {
  if (const json::array* items = array_field(status, "listeners")) {
    for (const auto& item : *items) {
      const json::object* l = item.if_object();
      if (l == nullptr) continue;
      const std::string name = string_field(*l, "name");
      if (listeners != nullptr) (*listeners)[name] = {number_field(*l, "connections"), 0};
      if (frame != nullptr) {
        frame->listeners.push_back(TopListenerRow{name, string_field(*l, "address"),
                                                  string_field(*l, "cluster"),
                                                  int_field(*l, "active"), std::nullopt});
      }
    }
  }
  if (const json::array* clusters = array_field(status, "clusters")) {
    for (const auto& citem : *clusters) {
      const json::object* c = citem.if_object();
      if (c == nullptr) continue;
      const std::string cluster = string_field(*c, "name");
      const json::array* items = array_field(*c, "nodes");
      if (items == nullptr) continue;
      for (const auto& item : *items) {
        const json::object* n = item.if_object();
        if (n == nullptr) continue;
        const std::string name = string_field(*n, "name");
        if (nodes != nullptr) {
          (*nodes)[{cluster, name}] = {
              number_field(*n, "total"),
              number_field(*n, "bytes_to_node") + number_field(*n, "bytes_to_client")};
        }
        if (frame == nullptr) continue;
        TopNodeRow row;
        row.cluster = cluster;
        row.name = name;
        row.address = string_field(*n, "address");
        row.state = string_field(*n, "state");
        row.up = bool_field(*n, "up", true);
        row.active = int_field(*n, "active");
        row.failures = count_field(*n, "failures");
        const std::uint64_t tier = count_field(*n, "tier");
        row.tier = tier > 0xFFFFFFFFULL ? 0 : static_cast<std::uint32_t>(tier);
        if (row.state == "offline" || !row.up) {
          row.health = TopHealth::bad;
        } else if (row.state == "draining") {
          row.health = TopHealth::warning;
        }
        frame->nodes.push_back(std::move(row));
      }
    }
  }
}

std::optional<double> rate(double now, double before, double seconds) {
  if (seconds <= 0 || now < before) return std::nullopt;
  return (now - before) / seconds;
}

struct Column {
  const char* header;
  bool right;
};

std::vector<std::string> align(const std::vector<Column>& columns,
                               const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width(columns.size());
  for (std::size_t c = 0; c < columns.size(); ++c) {
    width[c] = std::string_view(columns[c].header).size();
    for (const auto& row : rows) width[c] = std::max(width[c], row[c].size());
  }
  std::vector<std::string> lines;
  const auto append = [&](const std::vector<std::string>& cells) {
    std::string line;
    for (std::size_t c = 0; c < columns.size(); ++c) {
      const std::string pad(width[c] - cells[c].size(), ' ');
      if (c > 0) line += "  ";
      line += columns[c].right ? pad + cells[c] : cells[c] + pad;
    }
    const std::size_t end = line.find_last_not_of(' ');
    line.erase(end == std::string::npos ? 0 : end + 1);
    lines.push_back(std::move(line));
  };
  std::vector<std::string> header;
  for (const auto& column : columns) header.emplace_back(column.header);
  append(header);
  for (const auto& row : rows) append(row);
  return lines;
}

}  // namespace

TopFrame make_top_frame(const TopSample& current, const TopSample* previous) {
  TopFrame frame;
  std::map<std::string, Counters> listeners_now;
  std::map<NodeKey, Counters> nodes_now;
  collect(current.status, &listeners_now, &nodes_now, &frame);
  frame.affinity_entries = count_field(current.status, "affinity_entries");
  if (previous == nullptr) return frame;

  const std::chrono::duration<double> between = current.taken - previous->taken;
  frame.seconds = std::max(0.0, between.count());
  std::map<std::string, Counters> listeners_before;
  std::map<NodeKey, Counters> nodes_before;
  collect(previous->status, &listeners_before, &nodes_before, nullptr);
  for (auto& row : frame.listeners) {
    const auto before = listeners_before.find(row.name);
    if (before == listeners_before.end()) continue;
    row.connections_per_s =
        rate(listeners_now[row.name].connections, before->second.connections, frame.seconds);
  }
  for (auto& row : frame.nodes) {
    const NodeKey key{row.cluster, row.name};
    const auto before = nodes_before.find(key);
    if (before == nodes_before.end()) continue;
    const Counters& now = nodes_now[key];
    row.connections_per_s = rate(now.connections, before->second.connections, frame.seconds);
    row.bytes_per_s = rate(now.bytes, before->second.bytes, frame.seconds);
  }
  return frame;
}

std::string format_rate(const std::optional<double>& per_s) {
  if (!per_s) return "-";
  const double v = *per_s;
  if (v == 0) return "0";
  if (v < 100) return fmt::format("{:.1f}", v);
  return fmt::format("{:.0f}", v);
}

std::string format_byte_rate(const std::optional<double>& per_s) {
  if (!per_s) return "-";
  double v = *per_s;
  if (v < 1024) return fmt::format("{:.0f}", v);
  constexpr const char* kUnits[] = {"K", "M", "G", "T", "P"};
  std::size_t unit = 0;
  v /= 1024;
  while (v >= 1024 && unit + 1 < std::size(kUnits)) {
    v /= 1024;
    ++unit;
  }
  return fmt::format("{:.1f}{}", v, kUnits[unit]);
}

std::string top_summary(const TopFrame& frame) {
  const auto up = std::count_if(frame.nodes.begin(), frame.nodes.end(),
                                [](const TopNodeRow& n) { return n.up; });
  return fmt::format("pbadmin top: {} listener{}, {} node{} ({} up), {} affinity entr{}",
                     frame.listeners.size(), frame.listeners.size() == 1 ? "" : "s",
                     frame.nodes.size(), frame.nodes.size() == 1 ? "" : "s", up,
                     frame.affinity_entries, frame.affinity_entries == 1 ? "y" : "ies");
}

TopText layout_top(const TopFrame& frame) {
  TopText text;
  std::vector<std::vector<std::string>> rows;
  for (const auto& l : frame.listeners) {
    rows.push_back({l.name, l.address, l.cluster, std::to_string(l.active),
                    format_rate(l.connections_per_s)});
  }
  text.listener_lines = align({{"LISTENER", false},
                               {"ADDRESS", false},
                               {"CLUSTER", false},
                               {"ACTIVE", true},
                               {"CONN/S", true}},
                              rows);
  rows.clear();
  for (const auto& n : frame.nodes) {
    rows.push_back({n.cluster, n.name, n.address, n.state, n.up ? "up" : "down",
                    std::to_string(n.tier), std::to_string(n.active),
                    format_rate(n.connections_per_s), format_byte_rate(n.bytes_per_s),
                    std::to_string(n.failures)});
  }
  text.node_lines = align({{"CLUSTER", false},
                           {"NODE", false},
                           {"ADDRESS", false},
                           {"STATE", false},
                           {"UP", false},
                           {"TIER", true},
                           {"ACTIVE", true},
                           {"CONN/S", true},
                           {"BYTES/S", true},
                           {"FAILURES", true}},
                          rows);
  return text;
}

std::string format_top_plain(const TopFrame& frame) {
  const TopText text = layout_top(frame);
  std::string out = top_summary(frame) + "\n\n";
  for (const auto& line : text.listener_lines) out += line + '\n';
  out += '\n';
  for (const auto& line : text.node_lines) out += line + '\n';
  return out;
}

}  // namespace pb::pbadmin
