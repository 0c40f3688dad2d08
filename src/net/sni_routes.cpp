#include "protobalance/net/sni_routes.hpp"

#include <algorithm>
#include <array>

#include "protobalance/net/tls_client_hello.hpp"

namespace pb::net {
namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string lowered(std::string_view s) {
  std::string out(s.size(), '\0');
  std::transform(s.begin(), s.end(), out.begin(), lower);
  return out;
}

// The lower of two optional route indexes (nullopt = no match).
std::optional<std::size_t> first(std::optional<std::size_t> a, std::optional<std::size_t> b) {
  if (!a) return b;
  if (!b) return a;
  return std::min(*a, *b);
}

}  // namespace

std::optional<std::string> SniRoutes::check_pattern(std::string_view pattern) {
  if (pattern == "*") return std::nullopt;
  const std::string_view name = pattern.starts_with("*.") ? pattern.substr(2) : pattern;
  if (tls::is_dns_name(name)) return std::nullopt;
  return "bad server name pattern \"" + std::string(pattern) +
         "\": expected a host name (\"api.example.com\"), a one-label wildcard "
         "(\"*.example.com\") or \"*\"";
}

std::optional<std::string> SniRoutes::add(std::span<const std::string> patterns) {
  for (const auto& p : patterns) {
    if (auto error = check_pattern(p)) return error;
  }
  const std::size_t index = routes_++;
  for (const auto& p : patterns) {
    // emplace keeps an earlier route's entry: the first route wins.
    if (p == "*") {
      if (!catch_all_) catch_all_ = index;
    } else if (p.starts_with("*.")) {
      wildcard_.emplace(lowered(std::string_view(p).substr(2)), index);
    } else {
      exact_.emplace(lowered(p), index);
    }
  }
  return std::nullopt;
}

std::optional<std::size_t> SniRoutes::match(std::string_view server_name) const {
  std::optional<std::size_t> best = catch_all_;
  // Names longer than a DNS name cannot be in the tables; only "*" matches them.
  std::array<char, 256> buffer;
  if (server_name.empty() || server_name.size() > buffer.size()) return best;
  std::transform(server_name.begin(), server_name.end(), buffer.begin(), lower);
  const std::string_view name(buffer.data(), server_name.size());

  if (const auto it = exact_.find(name); it != exact_.end()) best = first(best, it->second);
  const auto dot = name.find('.');
  if (dot != std::string_view::npos && dot > 0 && dot + 1 < name.size()) {
    if (const auto it = wildcard_.find(name.substr(dot + 1)); it != wildcard_.end()) {
      best = first(best, it->second);
    }
  }
  return best;
}

}  // namespace pb::net
