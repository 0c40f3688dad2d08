#pragma once

// Chooses a route by the TLS server name (SNI) a client asked for: `[[listener.route]] sni = [...]`.
// Pure code; the ClientHello is read by tls_client_hello.hpp.

#include <cstddef>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

namespace pb::net {

// Routes in order, each with a list of patterns:
// - "api.example.com": that name exactly;
// - "*.example.com": one label before example.com ("x.example.com"), neither "example.com"
//   itself nor "y.x.example.com";
// - "*": every ClientHello, with a server name or without one.
// Matching is case-insensitive; the first route (lowest index) with a matching pattern wins,
// whatever kind of pattern matched. Lookup costs two hash lookups, independent of the number
// of routes and patterns. Built once (at configuration), then only read: match() is const and
// safe to call from many threads at once.
class SniRoutes {
 public:
  // Checks one pattern: "*", a DNS name (tls::is_dns_name), or "*." and a DNS name. Returns
  // a message saying what is wrong and what is expected, or nullopt if it is fine.
  static std::optional<std::string> check_pattern(std::string_view pattern);

  // Appends a route matching any of `patterns`; its index is the number of routes added
  // before. Returns the message of the first bad pattern (and adds nothing), or nullopt.
  // A route with no pattern matches nothing but still takes its index.
  std::optional<std::string> add(std::span<const std::string> patterns);

  // The index of the first route matching `server_name`, or nullopt. An empty name (a
  // ClientHello without SNI) matches only "*".
  std::optional<std::size_t> match(std::string_view server_name) const;

  std::size_t size() const { return routes_; }

 private:
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
  };
  using Index = std::unordered_map<std::string, std::size_t, Hash, std::equal_to<>>;

  Index exact_;     // lower-cased name -> first route
  Index wildcard_;  // lower-cased suffix after "*." -> first route
  std::optional<std::size_t> catch_all_;
  std::size_t routes_ = 0;
};

}  // namespace pb::net
