#include "protobalance/config/address.hpp"

#include <fmt/format.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>

namespace pb::config {

namespace {

namespace ip = boost::asio::ip;

constexpr std::string_view kExpected = "expected host:port, e.g. 127.0.0.1:8080";

bool is_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

// Returns the port, or nullopt when `text` is not a decimal number in range.
std::optional<std::uint16_t> parse_port(std::string_view text, bool allow_port_zero) {
  // More than five digits cannot be a port; checking first also keeps the sum below from
  // overflowing.
  if (!is_digits(text) || text.size() > 5) {
    return std::nullopt;
  }
  unsigned value = 0;
  for (const char c : text) {
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 65535 || (value == 0 && !allow_port_zero)) {
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(value);
}

// Resolves a host name with the system resolver (/etc/hosts, DNS). This blocks, which is fine:
// it runs only while a configuration is loaded, never on the data path. When a name has both
// IPv4 and IPv6 addresses the first IPv4 one wins, because backends listening on 0.0.0.0 are far
// more common than ones listening on [::], and "localhost" usually has both.
std::variant<ip::address, std::string> resolve(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* raw = nullptr;
  const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &raw);
  if (rc != 0) {
    const char* reason = rc == EAI_SYSTEM ? std::strerror(errno) : ::gai_strerror(rc);
    return fmt::format("cannot resolve '{}': {}", host, reason);
  }
  const std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> list(raw, &::freeaddrinfo);

  std::optional<ip::address> v6;
  for (const addrinfo* ai = list.get(); ai != nullptr; ai = ai->ai_next) {
    if (ai->ai_family == AF_INET && ai->ai_addrlen >= sizeof(sockaddr_in)) {
      sockaddr_in sin{};
      std::memcpy(&sin, ai->ai_addr, sizeof sin);
      return ip::address{ip::address_v4{ntohl(sin.sin_addr.s_addr)}};
    }
    if (ai->ai_family == AF_INET6 && ai->ai_addrlen >= sizeof(sockaddr_in6) && !v6) {
      sockaddr_in6 sin6{};
      std::memcpy(&sin6, ai->ai_addr, sizeof sin6);
      ip::address_v6::bytes_type bytes{};
      std::memcpy(bytes.data(), &sin6.sin6_addr, bytes.size());
      v6 = ip::address{ip::address_v6{bytes, sin6.sin6_scope_id}};
    }
  }
  if (v6) {
    return *v6;
  }
  return fmt::format("cannot resolve '{}': no IPv4 or IPv6 address", host);
}

}  // namespace

std::variant<Endpoint, std::string> parse_endpoint(std::string_view text, bool allow_port_zero) {
  const std::string_view port_range = allow_port_zero ? "0..65535" : "1..65535";
  std::string_view host;
  std::string_view port_text;
  const bool bracketed = !text.empty() && text.front() == '[';
  if (bracketed) {
    const std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return fmt::format("{}, got '{}'", kExpected, text);
    }
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
  } else {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      return fmt::format("{}, got '{}'", kExpected, text);
    }
    host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    // "::1:80" cannot be split reliably ("::1" port 80, or "::1:80" without a port?).
    if (host.find(':') != std::string_view::npos) {
      return fmt::format("IPv6 addresses need brackets: [::1]:80, got '{}'", text);
    }
  }
  if (host.empty()) {
    return fmt::format("{}, got '{}'", kExpected, text);
  }
  const std::optional<std::uint16_t> port = parse_port(port_text, allow_port_zero);
  if (!port) {
    return fmt::format("port must be {}, got '{}' in '{}'", port_range, port_text, text);
  }

  const std::string host_str(host);
  boost::system::error_code ec;
  if (bracketed) {
    const ip::address_v6 v6 = ip::make_address_v6(host_str, ec);
    if (ec) {
      return fmt::format("'{}' is not a valid IPv6 address in '{}'", host, text);
    }
    return Endpoint{v6, *port};
  }
  // A host made only of digits and dots is meant as an IPv4 address; do not let the resolver
  // reinterpret a typo such as "10.0.1" (inet_aton would read it as 10.0.0.1).
  if (std::all_of(host.begin(), host.end(),
                  [](char c) { return c == '.' || (c >= '0' && c <= '9'); })) {
    const ip::address_v4 v4 = ip::make_address_v4(host_str, ec);
    if (ec) {
      return fmt::format("'{}' is not a valid IPv4 address in '{}'", host, text);
    }
    return Endpoint{v4, *port};
  }
  auto resolved = resolve(host_str);
  if (auto* error = std::get_if<std::string>(&resolved)) {
    return std::move(*error);
  }
  return Endpoint{std::get<ip::address>(resolved), *port};
}

int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string format_endpoint(const Endpoint& ep) {
  if (ep.address().is_v6()) return fmt::format("[{}]:{}", ep.address().to_string(), ep.port());
  return fmt::format("{}:{}", ep.address().to_string(), ep.port());
}

}  // namespace pb::config
