#include "protobalance/pbadmin/format.hpp"

#include <algorithm>
#include <boost/json/array.hpp>
#include <boost/json/serialize.hpp>
#include <cmath>
#include <cstdio>
#include <string_view>
#include <utility>

#include "protobalance/config/utc_time.hpp"

namespace pb::pbadmin {
namespace {

namespace json = boost::json;
using config::format_utc;

// A column of an aligned text table: numbers are right-aligned (header included) so that their
// digits line up.
struct Column {
  std::string header;
  bool right = false;
};

std::string format_columns(const std::vector<Column>& columns,
                           const std::vector<std::vector<std::string>>& rows,
                           std::string_view indent) {
  std::vector<std::size_t> width(columns.size());
  for (std::size_t c = 0; c < columns.size(); ++c) {
    width[c] = columns[c].header.size();
    for (const auto& row : rows) width[c] = std::max(width[c], row[c].size());
  }
  std::string text;
  const auto append = [&](const std::vector<std::string>& cells) {
    std::string line(indent);
    for (std::size_t c = 0; c < columns.size(); ++c) {
      const std::string pad(width[c] - cells[c].size(), ' ');
      if (c > 0) line += "  ";
      line += columns[c].right ? pad + cells[c] : cells[c] + pad;
    }
    // Left-aligned last columns leave padding behind.
    line.erase(line.find_last_not_of(' ') + 1);
    text += line + '\n';
  };
  std::vector<std::string> header;
  for (const auto& column : columns) header.push_back(column.header);
  append(header);
  for (const auto& row : rows) append(row);
  return text;
}

const json::value* member(const json::object& object, std::string_view key) {
  return object.if_contains(key);
}

std::string string_of(const json::object& object, std::string_view key) {
  const json::value* value = member(object, key);
  if (value == nullptr || value->is_null()) return "-";
  if (const auto* s = value->if_string()) return std::string(*s);
  return json::serialize(*value);
}

bool bool_of(const json::object& object, std::string_view key) {
  const json::value* value = member(object, key);
  return value != nullptr && value->is_bool() && value->as_bool();
}

// Integers as integers, other numbers in the shortest form ("1.5"), anything else as JSON.
std::string number_of(const json::object& object, std::string_view key) {
  const json::value* value = member(object, key);
  if (value == nullptr || value->is_null()) return "-";
  if (value->is_int64()) return std::to_string(value->as_int64());
  if (value->is_uint64()) return std::to_string(value->as_uint64());
  if (value->is_double()) {
    const double d = value->as_double();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 1e15) {
      return std::to_string(static_cast<long long>(d));
    }
    char text[32];
    std::snprintf(text, sizeof text, "%g", d);
    return text;
  }
  return json::serialize(*value);
}

const json::array* array_of(const json::object& object, std::string_view key) {
  const json::value* value = member(object, key);
  return value == nullptr ? nullptr : value->if_array();
}

// Issue 12 columns of a node: STATE shows the agent's state next to the operator's when they
// differ, UP says why a node is out (failed checks, agent down), LOAD shows the factor in force
// when the agent or slow start changes it.
void describe_health(const json::object& n, std::string& state, std::string& up,
                     std::string& load) {
  const json::value* agent = member(n, "agent");
  if (agent != nullptr && agent->is_object()) {
    const auto& a = agent->as_object();
    if (string_of(a, "state") != "available") state += " (agent: " + string_of(a, "state") + ")";
    if (bool_of(a, "down")) up = "agent down";
  }
  const json::value* check = member(n, "check");
  if (check != nullptr && check->is_object()) {
    const auto& c = check->as_object();
    if (bool_of(c, "down")) {
      up = "check " + string_of(c, "last_result") + " since " + string_of(c, "last_change");
      // What the last failed check saw: for a mismatch, what came back.
      const json::value* failure = member(c, "last_failure");
      if (failure != nullptr && failure->is_object()) {
        const std::string detail = string_of(failure->as_object(), "detail");
        if (!detail.empty() && detail != "-") {
          up += " (";
          up += detail;
          up += ')';
        }
      }
    }
  }
  const std::string in_force = number_of(n, "effective_load_factor");
  if (in_force != "-" && in_force != load) load = in_force + "/" + load;
  const json::value* ramp = member(n, "slow_start");
  if (ramp != nullptr && ramp->is_object()) {
    load += " (ramp " + number_of(ramp->as_object(), "remaining_ms") + " ms)";
  }
}

// "listener L routes by TLS server name: a.example.com, *.a.example.com -> api" per route.
std::string format_sni_routes(const json::object& status) {
  std::string text;
  const json::array* listeners = array_of(status, "listeners");
  if (listeners == nullptr) return text;
  for (const auto& item : *listeners) {
    if (!item.is_object()) continue;
    const json::array* routes = array_of(item.as_object(), "sni_routes");
    if (routes == nullptr) continue;
    for (const auto& route_item : *routes) {
      if (!route_item.is_object()) continue;
      const auto& route = route_item.as_object();
      std::string names;
      if (const json::array* sni = array_of(route, "sni")) {
        for (const auto& name : *sni) {
          if (!name.is_string()) continue;
          if (!names.empty()) names += ", ";
          names += std::string_view(name.as_string());
        }
      }
      text += "listener ";
      text += string_of(item.as_object(), "name");
      text += " routes by TLS server name: ";
      text += names;
      text += " -> ";
      text += string_of(route, "cluster");
      text += '\n';
    }
  }
  return text;
}

// [twin]: the link's state and the twins heard recently; nothing without [twin].
std::string format_twin(const json::object& status) {
  const json::value* value = member(status, "twin");
  if (value == nullptr || !value->is_object()) return {};
  const auto& t = value->as_object();
  std::string text = "\ntwin ";
  text += string_of(t, "instance");
  text += " via Redis ";
  text += string_of(t, "redis");
  text += ": ";
  if (bool_of(t, "connected")) {
    text += "connected since ";
    text += string_of(t, "since");
    if (!bool_of(t, "subscribed")) text += " (not subscribed yet)";
  } else {
    text += "not connected";
    const std::string since = string_of(t, "since");
    if (since != "-") {
      text += " since ";
      text += since;
    }
    const std::string error = string_of(t, "last_error");
    if (!error.empty() && error != "-") {
      text += " (";
      text += error;
      text += ')';
    }
  }
  text += "\n  messages sent ";
  text += number_of(t, "messages_sent");
  text += ", received ";
  text += number_of(t, "messages_received");
  if (const json::value* lookups = member(t, "lookups");
      lookups != nullptr && lookups->is_object()) {
    const auto& l = lookups->as_object();
    text += "; lookups hit ";
    text += number_of(l, "hit");
    text += ", miss ";
    text += number_of(l, "miss");
    text += ", timeout ";
    text += number_of(l, "timeout");
  }
  text += "\n  twins heard in the last 10 minutes: ";
  std::string twins;
  if (const json::array* instances = array_of(t, "instances")) {
    for (const auto& item : *instances) {
      if (!item.is_object()) continue;
      if (!twins.empty()) twins += ", ";
      twins += string_of(item.as_object(), "instance");
      twins += " (";
      twins += string_of(item.as_object(), "last_heard");
      twins += ')';
    }
  }
  text += twins.empty() ? std::string("none") : twins;
  text += '\n';
  return text;
}

}  // namespace

std::string format_status(const boost::json::object& status) {
  std::string text;
  std::vector<std::vector<std::string>> rows;
  if (const json::array* listeners = array_of(status, "listeners")) {
    for (const auto& item : *listeners) {
      if (!item.is_object()) continue;
      const auto& l = item.as_object();
      std::string cluster = string_of(l, "cluster");
      if (bool_of(l, "routed"))
        cluster += " (routed; configured: " + string_of(l, "configured_cluster") + ")";
      rows.push_back({string_of(l, "name"), string_of(l, "address"), cluster,
                      number_of(l, "active"), number_of(l, "connections")});
    }
  }
  text += format_columns(
      {{"LISTENER"}, {"ADDRESS"}, {"CLUSTER"}, {"ACTIVE", true}, {"CONNECTIONS", true}}, rows, "");
  text += format_sni_routes(status);
  if (const json::array* clusters = array_of(status, "clusters")) {
    for (const auto& item : *clusters) {
      if (!item.is_object()) continue;
      const auto& c = item.as_object();
      text += "\ncluster " + string_of(c, "name") + ": " + string_of(c, "algorithm") +
              ", affinity " + (bool_of(c, "affinity") ? "on" : "off") + '\n';
      rows.clear();
      if (const json::array* nodes = array_of(c, "nodes")) {
        for (const auto& node_item : *nodes) {
          if (!node_item.is_object()) continue;
          const auto& n = node_item.as_object();
          std::string up =
              bool_of(n, "up") ? std::string("up") : "down since " + string_of(n, "since");
          const std::string max = number_of(n, "max_connections");
          std::string state = string_of(n, "state");
          std::string load = number_of(n, "load_factor");
          describe_health(n, state, up, load);
          rows.push_back({string_of(n, "name"), string_of(n, "address"), state, up,
                          number_of(n, "active"), number_of(n, "total"), number_of(n, "failures"),
                          number_of(n, "failovers"), load, max == "0" ? std::string("-") : max,
                          number_of(n, "tier"), string_of(n, "fallover")});
        }
      }
      text += format_columns({{"NODE"},
                              {"ADDRESS"},
                              {"STATE"},
                              {"UP"},
                              {"ACTIVE", true},
                              {"TOTAL", true},
                              {"FAILURES", true},
                              {"FAILOVERS", true},
                              {"LOAD", true},
                              {"MAX", true},
                              {"TIER", true},
                              {"FALLOVER"}},
                             rows, "  ");
    }
  }
  if (member(status, "blocks") != nullptr) {
    text += "\nblocks in force: " + number_of(status, "blocks") + '\n';
  }
  text += format_twin(status);
  return text;
}

std::string format_affinity_table(const std::vector<affinity::AffinityRow>& rows) {
  const std::vector<std::string> header{"CLIENT",     "CLUSTER",   "NODE",
                                        "FIRST_SEEN", "LAST_SEEN", "CONNECTIONS"};
  std::vector<std::vector<std::string>> cells;
  cells.reserve(rows.size());
  for (const auto& r : rows) {
    cells.push_back({r.client, r.cluster, r.node, format_utc(r.first_seen), format_utc(r.last_seen),
                     std::to_string(r.connections)});
  }
  std::vector<std::size_t> width(header.size());
  for (std::size_t c = 0; c < header.size(); ++c) {
    width[c] = header[c].size();
    for (const auto& line : cells) width[c] = std::max(width[c], line[c].size());
  }
  std::string text;
  const auto append = [&](const std::vector<std::string>& line, bool header_line) {
    for (std::size_t c = 0; c < line.size(); ++c) {
      const std::string pad(width[c] - line[c].size(), ' ');
      const bool last = c + 1 == line.size();
      // Counts are right-aligned under their header, as numbers are read.
      if (last && !header_line) {
        text += pad + line[c];
      } else {
        text += line[c];
        if (!last) text += pad + "  ";
      }
    }
    text += '\n';
  };
  append(header, true);
  for (const auto& line : cells) append(line, false);
  return text;
}

std::string format_affinity_json(const std::vector<affinity::AffinityRow>& rows) {
  boost::json::array array;
  array.reserve(rows.size());
  for (const auto& r : rows) {
    array.push_back(boost::json::object{{"client", r.client},
                                        {"cluster", r.cluster},
                                        {"node", r.node},
                                        {"first_seen", format_utc(r.first_seen)},
                                        {"last_seen", format_utc(r.last_seen)},
                                        {"connections", r.connections}});
  }
  return boost::json::serialize(array) + "\n";
}

std::string format_blocks_table(const std::vector<state::BlockRow>& rows) {
  std::vector<std::vector<std::string>> cells;
  cells.reserve(rows.size());
  for (const auto& r : rows) {
    cells.push_back({r.network, r.listener.empty() ? std::string("*") : r.listener,
                     format_utc(r.created),
                     r.expires == 0 ? std::string("-") : format_utc(r.expires)});
  }
  return format_columns({{"NETWORK"}, {"LISTENER"}, {"CREATED"}, {"EXPIRES"}}, cells, "");
}

std::string format_blocks_json(const std::vector<state::BlockRow>& rows) {
  json::array array;
  array.reserve(rows.size());
  for (const auto& r : rows) {
    array.push_back(json::object{
        {"network", r.network},
        {"listener", r.listener.empty() ? json::value(nullptr) : json::value(r.listener)},
        {"created", format_utc(r.created)},
        {"expires", r.expires == 0 ? json::value(nullptr) : json::value(format_utc(r.expires))}});
  }
  return json::serialize(array) + "\n";
}

void AffinityPrinter::add(affinity::AffinityRow row) {
  if (json_) {
    // One object: format_affinity_json's "[{...}]\n" without the brackets and the newline.
    const std::string one = format_affinity_json({row});
    out_ << (any_ ? "," : "[") << one.substr(1, one.size() - 3);
    any_ = true;
    return;
  }
  if (!streaming_) {
    buffered_.push_back(std::move(row));
    if (buffered_.size() >= kAlignRows) start_streaming();
    return;
  }
  out_ << table_line(row);
}

void AffinityPrinter::abandon() {
  if (json_ && any_) out_ << "]\n";
  finished_ = true;
}

void AffinityPrinter::finish() {
  if (finished_) return;
  finished_ = true;
  if (json_) {
    out_ << (any_ ? "]\n" : "[]\n");
    return;
  }
  if (!streaming_) {
    out_ << format_affinity_table(buffered_);
    return;
  }
  out_.flush();
}

void AffinityPrinter::start_streaming() {
  streaming_ = true;
  const std::string table = format_affinity_table(buffered_);
  // Column widths from the header line: where each next header starts.
  const std::string header = table.substr(0, table.find('\n'));
  for (const char* name : {"CLUSTER", "NODE", "FIRST_SEEN", "LAST_SEEN", "CONNECTIONS"}) {
    starts_.push_back(header.find(name));
  }
  starts_.push_back(header.size());
  out_ << table;
  out_.flush();
  buffered_.clear();
  buffered_.shrink_to_fit();
}

std::string AffinityPrinter::table_line(const affinity::AffinityRow& r) const {
  const std::string cells[] = {r.client, r.cluster, r.node, format_utc(r.first_seen),
                               format_utc(r.last_seen)};
  std::string line;
  for (std::size_t c = 0; c < 5; ++c) {
    line += cells[c];
    const std::size_t want = starts_[c];
    line += std::string(want > line.size() ? want - line.size() : 2, ' ');
  }
  const std::string count = std::to_string(r.connections);
  const std::size_t want = starts_[5];
  if (want > line.size() + count.size())
    line += std::string(want - line.size() - count.size(), ' ');
  return line + count + '\n';
}

}  // namespace pb::pbadmin
