#include "protobalance/control/admin_routes.hpp"

#include <algorithm>
#include <cctype>
#include <utility>

#include <fmt/format.h>

namespace pb::control {

namespace {

bool is_parameter(std::string_view segment) {
  return segment.size() > 2 && segment.front() == '{' && segment.back() == '}';
}

std::vector<std::string> split_pattern(std::string_view pattern) {
  std::vector<std::string> segments;
  while (!pattern.empty()) {
    const std::size_t slash = pattern.find('/');
    if (slash != 0) segments.emplace_back(pattern.substr(0, slash));
    if (slash == std::string_view::npos) break;
    pattern.remove_prefix(slash + 1);
  }
  return segments;
}

// "/v1/clusters/{cluster}/nodes/{node}/state" as the 404 lists it:
// "/v1/clusters/CLUSTER/nodes/NODE/state".
std::string readable(const std::vector<std::string>& segments) {
  std::string text;
  for (const auto& segment : segments) {
    text += '/';
    if (!is_parameter(segment)) {
      text += segment;
      continue;
    }
    for (const char c : std::string_view(segment).substr(1, segment.size() - 2)) {
      text += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
  }
  return text;
}

AdminResponse method_not_allowed(std::string_view method, std::string_view path,
                                 std::string allow) {
  AdminResponse response = error_response(
      405, fmt::format("{} is not allowed on {}; allowed: {}", method, path, allow));
  response.allow = std::move(allow);
  return response;
}

}  // namespace

void AdminRouteTable::add(std::string_view method, std::string_view pattern, AdminHandler handler) {
  routes_.push_back(
      Route{std::string(method), std::string(pattern), split_pattern(pattern), std::move(handler)});
}

bool AdminRouteTable::match(const Route& route, const std::vector<std::string>& segments,
                            std::map<std::string, std::string, std::less<>>& params) {
  if (route.segments.size() != segments.size()) return false;
  params.clear();
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const std::string& want = route.segments[i];
    if (is_parameter(want)) {
      params[want.substr(1, want.size() - 2)] = segments[i];
    } else if (want != segments[i]) {
      return false;
    }
  }
  return true;
}

std::string AdminRouteTable::resources() const {
  std::vector<std::string> seen;
  for (const auto& route : routes_) {
    std::string text = readable(route.segments);
    if (std::find(seen.begin(), seen.end(), text) == seen.end()) seen.push_back(std::move(text));
  }
  std::string list;
  for (const auto& text : seen) list += (list.empty() ? "" : ", ") + text;
  return list;
}

AdminResponse AdminRouteTable::dispatch(std::string_view method, std::string_view raw_target,
                                        std::string_view body) const {
  const auto target = parse_target(raw_target);
  if (!target) {
    return error_response(400, fmt::format("malformed request target '{}'", raw_target));
  }
  std::string allow;
  std::map<std::string, std::string, std::less<>> params;
  for (const auto& route : routes_) {
    if (!match(route, target->segments, params)) continue;
    if (route.method == method) {
      return route.handler(AdminRequest{method, *target, std::move(params), body});
    }
    // Another pattern may have the same shape: the Allow list holds the methods of this path.
    if (allow.find(route.method) == std::string::npos) {
      allow += (allow.empty() ? "" : ", ") + route.method;
    }
  }
  if (!allow.empty()) return method_not_allowed(method, target->path, std::move(allow));
  return error_response(404, fmt::format("no resource {}; resources: {}", target->path, resources()));
}

}  // namespace pb::control
