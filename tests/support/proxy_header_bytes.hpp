#pragma once

// PROXY protocol v2 headers built by hand, byte by byte as HAProxy's doc/proxy-protocol.txt lays
// them out, so that tests feed the daemon input that does not come from the codec under test.
// Header-only (no dependency of pb_test_support on Asio's address types beyond the headers).

#include <cstdint>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>

namespace pb::test::proxy_bytes {

inline const std::string kV2Signature("\r\n\r\n\0\r\nQUIT\n", 12);
inline constexpr std::uint8_t kLocal = 0x20;  // version 2, command LOCAL
inline constexpr std::uint8_t kProxy = 0x21;  // version 2, command PROXY
inline constexpr std::uint8_t kTcp4 = 0x11;   // AF_INET, STREAM
inline constexpr std::uint8_t kTcp6 = 0x21;   // AF_INET6, STREAM

inline std::string big_endian16(std::uint16_t v) {
  return {static_cast<char>(v >> 8), static_cast<char>(v & 0xFF)};
}

// Signature, version/command byte, family byte, the body's length, the body.
inline std::string v2(std::uint8_t version_command, std::uint8_t family, std::string_view body) {
  return kV2Signature + static_cast<char>(version_command) + static_cast<char>(family) +
         big_endian16(static_cast<std::uint16_t>(body.size())) + std::string(body);
}

// A PROXY command over TCP with the family of `source` (both endpoints must share it), then
// `tlvs` as given.
inline std::string v2_proxy(const boost::asio::ip::tcp::endpoint& source,
                            const boost::asio::ip::tcp::endpoint& destination,
                            std::string_view tlvs = {}) {
  std::string body;
  const auto append_address = [&body](const boost::asio::ip::address& a) {
    if (a.is_v4()) {
      const auto bytes = a.to_v4().to_bytes();
      body.append(bytes.begin(), bytes.end());
    } else {
      const auto bytes = a.to_v6().to_bytes();
      body.append(bytes.begin(), bytes.end());
    }
  };
  append_address(source.address());
  append_address(destination.address());
  body += big_endian16(source.port()) + big_endian16(destination.port());
  body += tlvs;
  return v2(kProxy, source.address().is_v4() ? kTcp4 : kTcp6, body);
}

// One TLV: type, 16-bit length, value.
inline std::string tlv(std::uint8_t type, std::string_view value) {
  return static_cast<char>(type) + big_endian16(static_cast<std::uint16_t>(value.size())) +
         std::string(value);
}

// LOCAL with an unspecified family and no body: what a health check of a proxy sends.
inline std::string v2_local() { return v2(kLocal, 0x00, {}); }

}  // namespace pb::test::proxy_bytes
