#include "protobalance/control/admin_request.hpp"

#include <algorithm>

#include <boost/json/object.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <fmt/format.h>

#include "protobalance/config/address.hpp"

namespace pb::control {

namespace json = boost::json;

namespace {

// Decodes %XX escapes (and '+' as a space in queries). Returns nullopt for a broken escape.
std::optional<std::string> percent_decode(std::string_view text, bool plus_is_space) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '%') {
      if (i + 2 >= text.size()) return std::nullopt;
      const int high = config::hex_value(text[i + 1]);
      const int low = config::hex_value(text[i + 2]);
      if (high < 0 || low < 0) return std::nullopt;
      out.push_back(static_cast<char>(high * 16 + low));
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

}  // namespace

AdminResponse error_response(unsigned status, std::string message) {
  return AdminResponse{status, json::object{{"error", std::move(message)}}, {}};
}

std::optional<RequestTarget> parse_target(std::string_view target) {
  RequestTarget parsed;
  const std::size_t question = target.find('?');
  const std::string_view path = target.substr(0, question);
  if (path.empty() || path.front() != '/') return std::nullopt;
  parsed.path = std::string(path);
  std::string_view rest = path.substr(1);
  while (!rest.empty()) {
    const std::size_t slash = rest.find('/');
    auto segment = percent_decode(rest.substr(0, slash), false);
    if (!segment) return std::nullopt;
    // A trailing slash (and doubled ones) name the same resource.
    if (!segment->empty()) parsed.segments.push_back(std::move(*segment));
    if (slash == std::string_view::npos) break;
    rest.remove_prefix(slash + 1);
  }
  if (question != std::string_view::npos) {
    std::string_view query = target.substr(question + 1);
    while (!query.empty()) {
      const std::size_t amp = query.find('&');
      const std::string_view pair = query.substr(0, amp);
      if (!pair.empty()) {
        const std::size_t eq = pair.find('=');
        auto key = percent_decode(pair.substr(0, eq), true);
        auto value = percent_decode(
            eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1), true);
        if (!key || !value) return std::nullopt;
        parsed.query.emplace_back(std::move(*key), std::move(*value));
      }
      if (amp == std::string_view::npos) break;
      query.remove_prefix(amp + 1);
    }
  }
  return parsed;
}

std::variant<Fields, AdminResponse> parse_fields(std::string_view body,
                                                std::initializer_list<std::string_view> required,
                                                std::initializer_list<std::string_view> optional) {
  boost::system::error_code ec;
  json::value value = json::parse(body, ec);
  if (ec) return error_response(400, fmt::format("malformed JSON body: {}", ec.message()));
  const json::object* object = value.if_object();
  if (object == nullptr) {
    return error_response(400, fmt::format("the body must be a JSON object, got {}",
                                           std::string_view(json::to_string(value.kind()))));
  }
  const auto expected = [&] {
    std::string text;
    for (const auto list : {required, optional}) {
      for (const std::string_view name : list) text += (text.empty() ? "\"" : ", \"") + std::string(name) + "\"";
    }
    return text;
  };
  Fields fields;
  for (const auto& [key, member] : *object) {
    const bool known =
        std::find(required.begin(), required.end(), std::string_view(key)) != required.end() ||
        std::find(optional.begin(), optional.end(), std::string_view(key)) != optional.end();
    if (!known) {
      return error_response(400, fmt::format("unknown field \"{}\"; expected {}",
                                             std::string_view(key), expected()));
    }
    const json::string* text = member.if_string();
    if (text == nullptr) {
      return error_response(400, fmt::format("field \"{}\" must be a string, got {}",
                                             std::string_view(key),
                                             std::string_view(json::to_string(member.kind()))));
    }
    fields.values.emplace(std::string_view(key), std::string_view(*text));
  }
  for (const std::string_view name : required) {
    if (!fields.values.contains(name)) {
      return error_response(400, fmt::format("missing field \"{}\"; expected {}", name, expected()));
    }
  }
  return fields;
}

}  // namespace pb::control
