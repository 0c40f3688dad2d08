#include "protobalance/net/proxy_protocol.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>

namespace pb::net::proxy {
namespace {

namespace ip = boost::asio::ip;
using ip::tcp;

constexpr std::string_view kV1Prefix = "PROXY ";
// The v2 signature: "\r\n\r\n\0\r\nQUIT\n".
constexpr std::array<std::uint8_t, 12> kV2Signature = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                                       0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr std::size_t kV2Fixed = 16;

// v2 byte 13: version in the high nibble, command in the low one.
constexpr std::uint8_t kCommandLocal = 0x0;
constexpr std::uint8_t kCommandProxy = 0x1;
// v2 byte 14: address family in the high nibble, transport in the low one.
constexpr std::uint8_t kFamilyInet = 0x1;
constexpr std::uint8_t kFamilyInet6 = 0x2;
constexpr std::uint8_t kFamilyUnix = 0x3;
constexpr std::uint8_t kTransportStream = 0x1;
constexpr std::uint8_t kTransportDgram = 0x2;
constexpr std::uint8_t kTlvAuthority = 0x02;

constexpr std::size_t kAddressesInet = 12;    // 4 + 4 + 2 + 2
constexpr std::size_t kAddressesInet6 = 36;   // 16 + 16 + 2 + 2

constexpr char kLocalV1[] = "PROXY UNKNOWN\r\n";
// Signature, 0x20 (version 2, LOCAL), 0x00 (AF_UNSPEC, UNSPEC), length 0.
constexpr char kLocalV2[] = "\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00";
static_assert(sizeof(kLocalV2) - 1 == kV2Fixed);

ParseResult invalid(std::string_view reason) { return {Status::invalid, 0, reason}; }

std::uint16_t read_u16(const std::uint8_t* p) {
  return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

void write_u16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v & 0xFF);
}

// ---- v1 ------------------------------------------------------------------------------------

// "0" or 1-5 digits without a leading zero, at most 65535.
std::optional<std::uint16_t> parse_port(std::string_view text) {
  if (text.empty() || text.size() > 5) return std::nullopt;
  if (text.size() > 1 && text[0] == '0') return std::nullopt;
  unsigned value = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

// An address of the named family in its strict textual form (inet_pton: dotted quad without
// leading zeros for IPv4; IPv6 without a zone id).
std::optional<ip::address> parse_address(std::string_view text, bool v6) {
  const std::string_view allowed = v6 ? "0123456789abcdefABCDEF:." : "0123456789.";
  if (text.empty() || text.size() > 45) return std::nullopt;
  if (text.find_first_not_of(allowed) != std::string_view::npos) return std::nullopt;
  std::array<char, 46> buffer{};
  std::memcpy(buffer.data(), text.data(), text.size());
  if (v6) {
    std::array<unsigned char, 16> bytes{};
    if (::inet_pton(AF_INET6, buffer.data(), bytes.data()) != 1) return std::nullopt;
    return ip::address(ip::address_v6(bytes));
  }
  std::array<unsigned char, 4> bytes{};
  if (::inet_pton(AF_INET, buffer.data(), bytes.data()) != 1) return std::nullopt;
  return ip::address(ip::address_v4(bytes));
}

// Parses a complete v1 line (without its CRLF).
ParseResult parse_v1_line(std::string_view line, std::size_t size, Header& out) {
  line.remove_prefix(kV1Prefix.size());
  if (line.starts_with("UNKNOWN")) {
    out = Header{};
    out.local = true;
    return {Status::complete, size, {}};
  }
  const bool v6 = line.starts_with("TCP6 ");
  if (!v6 && !line.starts_with("TCP4 ")) return invalid("v1 bad protocol");
  line.remove_prefix(5);

  std::array<std::string_view, 4> fields;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    const auto space = line.find(' ');
    const bool last = i + 1 == fields.size();
    if (last != (space == std::string_view::npos)) return invalid("v1 wrong number of fields");
    fields[i] = line.substr(0, space);
    if (!last) line.remove_prefix(space + 1);
  }
  const auto source = parse_address(fields[0], v6);
  const auto destination = parse_address(fields[1], v6);
  if (!source || !destination) return invalid("v1 bad address");
  const auto source_port = parse_port(fields[2]);
  const auto destination_port = parse_port(fields[3]);
  if (!source_port || !destination_port) return invalid("v1 bad port");

  out = Header{};
  out.source = tcp::endpoint(*source, *source_port);
  out.destination = tcp::endpoint(*destination, *destination_port);
  return {Status::complete, size, {}};
}

// Checks the bytes of a v1 line seen so far that cannot be complete yet, so that garbage is
// refused as soon as it shows, not at the timeout.
ParseResult check_v1_partial(std::string_view seen) {
  std::string_view rest = seen.substr(std::min(seen.size(), kV1Prefix.size()));
  constexpr std::array<std::string_view, 3> kProtocols = {"TCP4 ", "TCP6 ", "UNKNOWN"};
  const auto it = std::find_if(kProtocols.begin(), kProtocols.end(), [&](std::string_view p) {
    const auto n = std::min(p.size(), rest.size());
    return rest.substr(0, n) == p.substr(0, n);
  });
  if (it == kProtocols.end()) return invalid("v1 bad protocol");
  if (rest.size() <= it->size() || *it == "UNKNOWN") return {};
  rest.remove_prefix(it->size());
  const std::string_view allowed =
      (*it == "TCP6 ") ? "0123456789abcdefABCDEF:. \r" : "0123456789. \r";
  if (rest.find_first_not_of(allowed) != std::string_view::npos) {
    return invalid("v1 bad character");
  }
  if (rest.starts_with(' ') || rest.find("  ") != std::string_view::npos ||
      std::count(rest.begin(), rest.end(), ' ') > 3) {
    return invalid("v1 wrong number of fields");
  }
  return {};
}

ParseResult parse_v1(std::string_view seen, Header& out) {
  const auto prefix = std::min(seen.size(), kV1Prefix.size());
  if (seen.substr(0, prefix) != kV1Prefix.substr(0, prefix)) return invalid("bad signature");

  const auto window = seen.substr(0, std::min(seen.size(), kMaxV1));
  // A CR must be followed by LF; a LF must follow a CR.
  for (std::size_t i = 0; i < window.size(); ++i) {
    if (window[i] == '\r') {
      if (i + 1 < window.size() && window[i + 1] != '\n') return invalid("v1 bad line end");
      if (i + 1 < window.size()) return parse_v1_line(window.substr(0, i), i + 2, out);
    } else if (window[i] == '\n') {
      return invalid("v1 bad line end");
    }
  }
  if (seen.size() >= kMaxV1) return invalid("v1 line too long");
  return check_v1_partial(seen);
}

// ---- v2 ------------------------------------------------------------------------------------

// The address block of the families whose addresses are used; 0 for the others (their block,
// and any TLV after it, is skipped whole: the header is then local).
std::size_t address_block_size(std::uint8_t family) {
  switch (family) {
    case kFamilyInet: return kAddressesInet;
    case kFamilyInet6: return kAddressesInet6;
    default: return 0;
  }
}

ParseResult parse_v2(std::span<const std::uint8_t> data, Header& out) {
  const auto prefix = std::min(data.size(), kV2Signature.size());
  if (!std::equal(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(prefix),
                  kV2Signature.begin())) {
    return invalid("bad signature");
  }
  if (data.size() <= 12) return {};
  if ((data[12] >> 4) != 2) return invalid("v2 bad version");
  const std::uint8_t command = data[12] & 0x0F;
  if (command != kCommandLocal && command != kCommandProxy) return invalid("v2 bad command");
  if (data.size() <= 13) return {};
  const std::uint8_t family = data[13] >> 4;
  const std::uint8_t transport = data[13] & 0x0F;
  // LOCAL discards the whole protocol block, family included (spec 2.2).
  if (command == kCommandProxy) {
    if (family > kFamilyUnix) return invalid("v2 bad family");
    if (transport > kTransportDgram) return invalid("v2 bad transport");
  }
  if (data.size() < kV2Fixed) return {};
  const std::size_t body = read_u16(&data[14]);
  const std::size_t size = kV2Fixed + body;
  if (size > kMaxV2) return invalid("v2 header too long");
  const std::size_t addresses = command == kCommandProxy ? address_block_size(family) : 0;
  if (body < addresses) return invalid("v2 address block too short");
  if (data.size() < size) return {};

  Header header;
  if (command == kCommandLocal) {
    header.local = true;
    out = std::move(header);
    return {Status::complete, size, {}};
  }

  const std::uint8_t* p = &data[kV2Fixed];
  // AF_UNSPEC, AF_UNIX or DGRAM: the spec lets the receiver use the connection's own addresses.
  header.local = transport != kTransportStream || addresses == 0;
  if (header.local) {
    out = std::move(header);
    return {Status::complete, size, {}};
  }
  if (family == kFamilyInet) {
    std::array<unsigned char, 4> source{};
    std::array<unsigned char, 4> destination{};
    std::memcpy(source.data(), p, 4);
    std::memcpy(destination.data(), p + 4, 4);
    header.source = tcp::endpoint(ip::address_v4(source), read_u16(p + 8));
    header.destination = tcp::endpoint(ip::address_v4(destination), read_u16(p + 10));
  } else {
    std::array<unsigned char, 16> source{};
    std::array<unsigned char, 16> destination{};
    std::memcpy(source.data(), p, 16);
    std::memcpy(destination.data(), p + 16, 16);
    header.source = tcp::endpoint(ip::address_v6(source), read_u16(p + 32));
    header.destination = tcp::endpoint(ip::address_v6(destination), read_u16(p + 34));
  }

  // TLVs: type (1), length (2, big-endian), value. They must tile the rest of the body exactly.
  bool have_authority = false;
  for (std::size_t at = addresses; at < body;) {
    if (body - at < 3) return invalid("v2 truncated TLV");
    const std::uint8_t type = p[at];
    const std::size_t length = read_u16(p + at + 1);
    at += 3;
    if (body - at < length) return invalid("v2 truncated TLV");
    if (type == kTlvAuthority && !have_authority) {
      header.authority.assign(reinterpret_cast<const char*>(p + at), length);
      have_authority = true;
    }
    at += length;
  }
  out = std::move(header);
  return {Status::complete, size, {}};
}

// Source and destination in one family: both IPv4 when both are, else both IPv6 with an IPv4
// one written IPv4-mapped. Zone ids are dropped (they mean nothing to the peer).
struct Pair {
  bool v6 = false;
  ip::address_v6::bytes_type source6{};
  ip::address_v6::bytes_type destination6{};
  ip::address_v4::bytes_type source4{};
  ip::address_v4::bytes_type destination4{};
};

ip::address_v6::bytes_type as_v6(const ip::address& a) {
  if (a.is_v6()) return a.to_v6().to_bytes();
  return ip::make_address_v6(ip::v4_mapped, a.to_v4()).to_bytes();
}

Pair make_pair(const tcp::endpoint& source, const tcp::endpoint& destination) {
  Pair pair;
  pair.v6 = !(source.address().is_v4() && destination.address().is_v4());
  if (pair.v6) {
    pair.source6 = as_v6(source.address());
    pair.destination6 = as_v6(destination.address());
  } else {
    pair.source4 = source.address().to_v4().to_bytes();
    pair.destination4 = destination.address().to_v4().to_bytes();
  }
  return pair;
}

}  // namespace

ParseResult parse(std::span<const std::uint8_t> data, Header& out) {
  if (data.empty()) return {};
  if (data[0] == kV2Signature[0]) return parse_v2(data, out);
  if (data[0] == static_cast<std::uint8_t>(kV1Prefix[0])) {
    return parse_v1(std::string_view(reinterpret_cast<const char*>(data.data()), data.size()),
                    out);
  }
  return invalid("bad signature");
}

std::size_t encode_v1(const tcp::endpoint& source, const tcp::endpoint& destination,
                      std::span<char> out) {
  const Pair pair = make_pair(source, destination);
  // Longest line: "PROXY TCP6 " + 2 * 45 + 2 * 5 + 3 spaces + CRLF < 128.
  std::array<char, 128> line{};
  char* p = line.data();
  char* const end = line.data() + line.size();
  // Bounded although the line always fits: the bound is what lets the compiler see it.
  const auto append = [&](std::string_view s) {
    const auto n = std::min(s.size(), static_cast<std::size_t>(end - p));
    std::memcpy(p, s.data(), n);
    p += n;
  };
  const auto append_address = [&](const void* bytes) {
    // inet_ntop cannot fail here: the family is valid and the space suffices.
    const int family = pair.v6 ? AF_INET6 : AF_INET;
    if (::inet_ntop(family, bytes, p, static_cast<socklen_t>(end - p)) != nullptr) {
      p += std::strlen(p);
    }
  };
  append(pair.v6 ? "PROXY TCP6 " : "PROXY TCP4 ");
  append_address(pair.v6 ? static_cast<const void*>(pair.source6.data()) : pair.source4.data());
  append(" ");
  append_address(pair.v6 ? static_cast<const void*>(pair.destination6.data())
                         : pair.destination4.data());
  append(" ");
  p = std::to_chars(p, end, source.port()).ptr;
  append(" ");
  p = std::to_chars(p, end, destination.port()).ptr;
  append("\r\n");

  const auto size = static_cast<std::size_t>(p - line.data());
  if (out.size() < size) return 0;
  std::memcpy(out.data(), line.data(), size);
  return size;
}

std::size_t encode_v2(const tcp::endpoint& source, const tcp::endpoint& destination,
                      std::string_view authority, std::span<std::uint8_t> out) {
  const Pair pair = make_pair(source, destination);
  const std::size_t addresses = pair.v6 ? kAddressesInet6 : kAddressesInet;
  const std::size_t tlv = authority.empty() ? 0 : 3 + authority.size();
  const std::size_t size = kV2Fixed + addresses + tlv;
  if (size > kMaxV2 || out.size() < size) return 0;

  std::uint8_t* p = out.data();
  std::memcpy(p, kV2Signature.data(), kV2Signature.size());
  p[12] = 0x20 | kCommandProxy;
  p[13] = static_cast<std::uint8_t>(((pair.v6 ? kFamilyInet6 : kFamilyInet) << 4) |
                                    kTransportStream);
  write_u16(p + 14, static_cast<std::uint16_t>(size - kV2Fixed));
  p += kV2Fixed;
  if (pair.v6) {
    std::memcpy(p, pair.source6.data(), 16);
    std::memcpy(p + 16, pair.destination6.data(), 16);
    write_u16(p + 32, source.port());
    write_u16(p + 34, destination.port());
  } else {
    std::memcpy(p, pair.source4.data(), 4);
    std::memcpy(p + 4, pair.destination4.data(), 4);
    write_u16(p + 8, source.port());
    write_u16(p + 10, destination.port());
  }
  p += addresses;
  if (!authority.empty()) {
    p[0] = kTlvAuthority;
    write_u16(p + 1, static_cast<std::uint16_t>(authority.size()));
    std::memcpy(p + 3, authority.data(), authority.size());
  }
  return size;
}

std::string_view local_header(Version v) {
  switch (v) {
    case Version::v1: return {kLocalV1, sizeof(kLocalV1) - 1};
    case Version::v2: return {kLocalV2, sizeof(kLocalV2) - 1};
    case Version::off: break;
  }
  return {};
}

}  // namespace pb::net::proxy
