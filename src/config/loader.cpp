// The configuration loader: the document's top level, diagnostics and the typed readers every
// section uses (loader.hpp says which file reads which section).
#include "loader.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "protobalance/config/address.hpp"

namespace pb::config::detail {
namespace {

constexpr std::array<std::string_view, 8> kTopKeys{"service",    "listener", "cluster", "metrics",
                                                   "access_log", "snmp",     "admin",   "twin"};

}  // namespace

SourcePos to_pos(const toml::source_region& region) {
  return {region.begin.line, region.begin.column};
}

std::string join(Keys words) {
  std::string out;
  for (const std::string_view w : words) {
    if (!out.empty()) {
      out += ", ";
    }
    out += w;
  }
  return out;
}

std::string_view type_name(const toml::node& node) {
  switch (node.type()) {
    case toml::node_type::table:
      return "table";
    case toml::node_type::array:
      return "array";
    case toml::node_type::string:
      return "string";
    case toml::node_type::integer:
      return "integer";
    case toml::node_type::floating_point:
      return "float";
    case toml::node_type::boolean:
      return "boolean";
    case toml::node_type::date:
      return "local date";
    case toml::node_type::time:
      return "local time";
    case toml::node_type::date_time:
      return "date-time";
    case toml::node_type::none:
      break;
  }
  return "nothing";
}

bool is_valid_name(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '.' || c == '-';
  });
}

Loader::Loader(std::string source_name, const fs::path& base_dir)
    : source_name_(std::move(source_name)) {
  std::error_code ec;
  base_dir_ = base_dir.empty() ? fs::current_path(ec) : fs::absolute(base_dir, ec);
  if (ec) {
    base_dir_ = base_dir;
  }
}

LoadResult Loader::run(std::string_view text, fs::path file) {
  config_.file = std::move(file);
#if TOML_EXCEPTIONS
  toml::table root;
  try {
    root = toml::parse(text, std::string_view{source_name_});
  } catch (const toml::parse_error& e) {
    error(to_pos(e.source()), std::string(e.description()));
    return finish();
  }
#else
  toml::parse_result parsed = toml::parse(text, std::string_view{source_name_});
  if (!parsed) {
    error(to_pos(parsed.error().source()), std::string(parsed.error().description()));
    return finish();
  }
  toml::table root = std::move(parsed).table();
#endif
  read_root(root);
  return finish();
}

// Reports a problem that concerns the file as a whole (for example, it cannot be read).
LoadResult Loader::fail(std::string message) {
  error(SourcePos{}, std::move(message));
  return finish();
}

void Loader::error(SourcePos pos, std::string message) {
  errors_.push_back(Diagnostic{source_name_, pos, std::move(message)});
}

void Loader::error(const toml::node& node, std::string message) {
  error(to_pos(node.source()), std::move(message));
}

void Loader::unknown_key(const toml::key& key, std::string_view where, Keys allowed) {
  error(to_pos(key.source()),
        fmt::format("unknown key '{}' in {}; allowed keys: {}", key.str(), where, join(allowed)));
}

void Loader::missing_key(const toml::table& table, std::string_view where, std::string_view key) {
  error(table, fmt::format("{} is missing required key '{}'", where, key));
}

LoadResult Loader::finish() {
  LoadResult result;
  if (errors_.empty()) {
    result.config = std::make_shared<const Config>(std::move(config_));
    return result;
  }
  // toml++ tables iterate in key order, not file order; the operator reads the file top down.
  std::stable_sort(errors_.begin(), errors_.end(), [](const Diagnostic& a, const Diagnostic& b) {
    return std::pair(a.pos.line, a.pos.column) < std::pair(b.pos.line, b.pos.column);
  });
  result.errors = std::move(errors_);
  return result;
}

std::optional<std::string> Loader::read_string(const toml::node& node, std::string_view key) {
  if (const auto* s = node.as_string()) {
    return s->get();
  }
  error(node, fmt::format("{} must be a string, got {}", key, type_name(node)));
  return std::nullopt;
}

std::optional<std::int64_t> Loader::read_integer(const toml::node& node, std::string_view key,
                                                 std::int64_t min, std::int64_t max) {
  const auto* i = node.as_integer();
  if (i == nullptr) {
    error(node, fmt::format("{} must be an integer, got {}", key, type_name(node)));
    return std::nullopt;
  }
  const std::int64_t value = i->get();
  if (value < min || value > max) {
    error(node, fmt::format("{} must be from {} to {}, got {}", key, min, max, value));
    return std::nullopt;
  }
  return value;
}

std::optional<bool> Loader::read_bool(const toml::node& node, std::string_view key) {
  if (const auto* b = node.as_boolean()) {
    return b->get();
  }
  error(node, fmt::format("{} must be a boolean (true or false), got {}", key, type_name(node)));
  return std::nullopt;
}

std::optional<Duration> Loader::read_duration(const toml::node& node, std::string_view key,
                                              bool positive) {
  const auto* s = node.as_string();
  if (s == nullptr) {
    error(node,
          fmt::format("{} must be a duration string such as \"3s\", got {}", key, type_name(node)));
    return std::nullopt;
  }
  const std::optional<Duration> d = parse_duration(s->get());
  if (!d) {
    error(node, fmt::format("{} has an invalid duration '{}'; expected a whole number and one unit "
                            "(ms, s, m, h, d), e.g. \"250ms\", \"3s\", \"1h\"",
                            key, s->get()));
    return std::nullopt;
  }
  if (positive && d->count() == 0) {
    error(node, fmt::format("{} must be greater than 0s", key));
    return std::nullopt;
  }
  return d;
}

// A name with bad characters is reported but still returned, so that references to it (a
// listener's `cluster`) do not produce a second, misleading "not defined" error.
std::optional<std::string> Loader::read_name(const toml::node& node) {
  std::optional<std::string> name = read_string(node, "name");
  if (name && !is_valid_name(*name)) {
    error(node,
          fmt::format(
              "name must be non-empty and use only letters, digits, '_', '.' and '-', got '{}'",
              *name));
  }
  return name;
}

std::optional<Endpoint> Loader::read_endpoint(const toml::node& node, std::string_view key,
                                              bool allow_port_zero) {
  const std::optional<std::string> text = read_string(node, key);
  if (!text) {
    return std::nullopt;
  }
  auto parsed = parse_endpoint(*text, allow_port_zero);
  if (const auto* message = std::get_if<std::string>(&parsed)) {
    error(node, fmt::format("{}: {}", key, *message));
    return std::nullopt;
  }
  return std::get<Endpoint>(parsed);
}

// `[[key]]` sections: an array whose elements are tables. Reports a plain `[key]` table or any
// other type, and each element that is not a table; returns the tables that are.
std::vector<const toml::table*> Loader::read_table_array(const toml::node& node,
                                                         std::string_view key,
                                                         std::string_view header) {
  std::vector<const toml::table*> tables;
  const auto* array = node.as_array();
  if (array == nullptr) {
    error(node, fmt::format("{} must be an array of tables, written {}, got {}", key, header,
                            type_name(node)));
    return tables;
  }
  for (const toml::node& element : *array) {
    if (const auto* t = element.as_table()) {
      tables.push_back(t);
    } else {
      error(element, fmt::format("each {} entry must be a table, got {}", key, type_name(element)));
    }
  }
  return tables;
}

// An array of strings (allow, deny, sni), each kept with its position: what they mean is
// checked later by the area that understands them, which points at the entry.
std::vector<PlacedText> Loader::read_placed_strings(const toml::node& value, std::string_view key) {
  std::vector<PlacedText> out;
  const auto* array = value.as_array();
  if (array == nullptr) {
    error(value, fmt::format("{} must be an array of strings, got {}", key, type_name(value)));
    return out;
  }
  for (const auto& item : *array) {
    if (const auto* text = item.as_string()) {
      out.push_back(PlacedText{text->get(), to_pos(item.source())});
    } else {
      error(item, fmt::format("{} entries must be strings, got {}", key, type_name(item)));
    }
  }
  return out;
}

// Hex digits, two per byte (upper or lower case); reports and returns nullopt otherwise.
std::optional<std::string> Loader::read_hex_bytes(const toml::node& node, std::string_view key,
                                                  std::string_view hex) {
  if (hex.empty() || hex.size() % 2 != 0) {
    error(node, fmt::format("{} must be an even, non-zero number of hex digits, got {}", key,
                            hex.size()));
    return std::nullopt;
  }
  std::string bytes;
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int high = hex_value(hex[i]);
    const int low = hex_value(hex[i + 1]);
    if (high < 0 || low < 0) {
      error(node, fmt::format("{}: '{}' at offset {} is not a hex digit", key,
                              high < 0 ? hex[i] : hex[i + 1], high < 0 ? i : i + 1));
      return std::nullopt;
    }
    bytes.push_back(static_cast<char>(high * 16 + low));
  }
  return bytes;
}

void Loader::read_root(const toml::table& root) {
  const toml::node* listeners = nullptr;
  for (auto&& [key, value] : root) {
    const std::string_view k = key.str();
    if (admin_socket_only_ && k != "service" && k != "admin") {
      continue;
    }
    if (k == "service") {
      if (const auto* t = value.as_table()) {
        read_service(*t);
      } else {
        error(value,
              fmt::format("service must be a table, written [service], got {}", type_name(value)));
      }
    } else if (k == "metrics" || k == "snmp" || k == "access_log") {
      read_observability_section(k, value);
    } else if (k == "admin") {
      if (const auto* t = value.as_table()) {
        read_admin(*t);
      } else {
        error(value,
              fmt::format("admin must be a table, written [admin], got {}", type_name(value)));
      }
    } else if (k == "twin") {
      read_twin(value);
    } else if (k == "listener") {
      listeners = &value;  // after the clusters, which listeners refer to
    } else if (k == "cluster") {
      for (const toml::table* t : read_table_array(value, "cluster", "[[cluster]]")) {
        read_cluster(*t);
      }
    } else {
      unknown_key(key, "the top level", kTopKeys);
    }
  }
  if (listeners != nullptr) {
    for (const toml::table* t : read_table_array(*listeners, "listener", "[[listener]]")) {
      read_listener(*t);
    }
  }
  resolve_state_dir();
  resolve_access_log_path();
  resolve_admin_socket();
}

}  // namespace pb::config::detail
