#include "protobalance/net/proxy_protocol.hpp"

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <gtest/gtest.h>

namespace pb::net::proxy {
namespace {

namespace ip = boost::asio::ip;
using ip::tcp;
using Bytes = std::vector<std::uint8_t>;

Bytes bytes_of(std::string_view text) { return Bytes(text.begin(), text.end()); }

tcp::endpoint ep(const char* address, std::uint16_t port) {
  return {ip::make_address(address), port};
}

ParseResult parse_bytes(const Bytes& data, Header& out) { return parse(data, out); }
ParseResult parse_text(std::string_view text, Header& out) { return parse(bytes_of(text), out); }

// The v2 fixed part: signature, version/command, family/transport, body length.
Bytes v2_fixed(std::uint8_t ver_cmd, std::uint8_t family, std::uint16_t length) {
  Bytes b = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
  b.push_back(ver_cmd);
  b.push_back(family);
  b.push_back(static_cast<std::uint8_t>(length >> 8));
  b.push_back(static_cast<std::uint8_t>(length & 0xFF));
  return b;
}

void append(Bytes& b, std::initializer_list<std::uint8_t> more) {
  b.insert(b.end(), more.begin(), more.end());
}

// 192.168.0.1:56324 -> 192.168.0.11:443 as a v2 IPv4 address block.
void append_inet_block(Bytes& b) {
  append(b, {0xC0, 0xA8, 0x00, 0x01, 0xC0, 0xA8, 0x00, 0x0B, 0xDC, 0x04, 0x01, 0xBB});
}

// Feeds `data` one byte more at a time; every proper prefix must be incomplete, the whole
// complete with size == data.size().
void expect_byte_at_a_time(const Bytes& data, Header& out) {
  for (std::size_t n = 0; n < data.size(); ++n) {
    Header scratch;
    const auto r = parse(std::span<const std::uint8_t>(data.data(), n), scratch);
    ASSERT_EQ(r.status, Status::incomplete) << "prefix of " << n << " bytes: " << r.error;
  }
  const auto r = parse(data, out);
  ASSERT_EQ(r.status, Status::complete) << r.error;
  EXPECT_EQ(r.size, data.size());
}

TEST(ProxyProtocolTest, VersionNames) {
  // Verifies the codec's versions are the configuration's: their names parse and print back,
  // and others are refused.
  static_assert(std::is_same_v<Version, config::ProxyProtocol>);
  for (auto v : {Version::off, Version::v1, Version::v2}) {
    EXPECT_EQ(config::parse_proxy_protocol(config::to_string(v)), v);
  }
  EXPECT_EQ(config::to_string(Version::v2), "v2");
  EXPECT_FALSE(config::parse_proxy_protocol("V1").has_value());
  EXPECT_FALSE(config::parse_proxy_protocol("").has_value());
  EXPECT_FALSE(config::parse_proxy_protocol("v3").has_value());
}

TEST(ProxyProtocolTest, V1Tcp4) {
  // Verifies a v1 TCP4 line decodes to its endpoints and that payload after it is not consumed.
  Header h;
  const std::string line = "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n";
  const auto r = parse_text(line + "GET / HTTP/1.0\r\n", h);
  ASSERT_EQ(r.status, Status::complete) << r.error;
  EXPECT_EQ(r.size, line.size());
  EXPECT_FALSE(h.local);
  EXPECT_EQ(h.source, ep("192.168.0.1", 56324));
  EXPECT_EQ(h.destination, ep("192.168.0.11", 443));
  EXPECT_TRUE(h.authority.empty());
}

TEST(ProxyProtocolTest, V1Tcp6) {
  // Verifies a v1 TCP6 line decodes to IPv6 endpoints, including ports 0 and 65535.
  Header h;
  const auto r = parse_text("PROXY TCP6 2001:db8::1 ::ffff:10.0.0.1 0 65535\r\n", h);
  ASSERT_EQ(r.status, Status::complete) << r.error;
  EXPECT_FALSE(h.local);
  EXPECT_EQ(h.source, ep("2001:db8::1", 0));
  EXPECT_EQ(h.destination, ep("::ffff:10.0.0.1", 65535));
  EXPECT_TRUE(h.destination.address().is_v6());
}

TEST(ProxyProtocolTest, V1Unknown) {
  // Verifies "PROXY UNKNOWN" with or without text up to CRLF is local with unset endpoints.
  for (std::string_view line :
       {"PROXY UNKNOWN\r\n", "PROXY UNKNOWN ffff:f::1 ffff:f::2 65535 65535\r\n",
        "PROXY UNKNOWN whatever is here\r\n"}) {
    Header h;
    h.source = ep("1.2.3.4", 5);
    const auto r = parse_text(line, h);
    ASSERT_EQ(r.status, Status::complete) << line;
    EXPECT_EQ(r.size, line.size());
    EXPECT_TRUE(h.local);
    EXPECT_EQ(h.source, tcp::endpoint());
  }
}

TEST(ProxyProtocolTest, V1ByteAtATime) {
  // Verifies v1 headers fed one byte at a time stay incomplete until the LF, then complete.
  for (std::string_view line :
       {"PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n",
        "PROXY TCP6 2001:db8:0:1:2:3:4:5 fe80::1 1 2\r\n", "PROXY UNKNOWN\r\n"}) {
    Header h;
    expect_byte_at_a_time(bytes_of(line), h);
  }
  Header h;
  expect_byte_at_a_time(bytes_of("PROXY TCP4 10.1.2.3 10.9.8.7 1000 2000\r\n"), h);
  EXPECT_EQ(h.source, ep("10.1.2.3", 1000));
  EXPECT_EQ(h.destination, ep("10.9.8.7", 2000));
}

TEST(ProxyProtocolTest, GarbageFirstByteIsInvalidAtOnce) {
  // Verifies a client that is not a proxy is refused on its first byte, whatever it is.
  for (std::uint8_t first : {std::uint8_t{'G'}, std::uint8_t{0x16}, std::uint8_t{'p'},
                             std::uint8_t{0x00}, std::uint8_t{'\n'}, std::uint8_t{0xFF}}) {
    Header h;
    const Bytes one = {first};
    const auto r = parse(one, h);
    EXPECT_EQ(r.status, Status::invalid) << int{first};
    EXPECT_FALSE(r.error.empty());
  }
  Header h;
  EXPECT_EQ(parse_text("GET / HTTP/1.1\r\n", h).status, Status::invalid);
  EXPECT_EQ(parse_text("PROXZ", h).status, Status::invalid);
  EXPECT_EQ(parse_text("PROXY TCP5", h).status, Status::invalid);
  EXPECT_EQ(parse_text("PROXY tcp4", h).status, Status::invalid);
  EXPECT_EQ(parse_text("PROXY TCP4 1.2.3.x", h).status, Status::invalid);
  EXPECT_EQ(parse_text("PROXY TCP4 1.2.3.4  ", h).status, Status::invalid);
  EXPECT_EQ(parse_text("\r\n\r\n\0X", h).status, Status::incomplete);  // 4 bytes: \0 not seen
  EXPECT_EQ(parse(bytes_of(std::string_view("\r\n\r\n\0X", 6)), h).status, Status::invalid);
  EXPECT_EQ(parse(Bytes{}, h).status, Status::incomplete);
}

TEST(ProxyProtocolTest, V1LineLength) {
  // Verifies a 107-byte v1 line is accepted and a longer one is invalid once 107 bytes are in.
  const std::string head = "PROXY UNKNOWN ";
  const std::string longest = head + std::string(kMaxV1 - head.size() - 2, 'x') + "\r\n";
  ASSERT_EQ(longest.size(), kMaxV1);
  Header h;
  const auto ok = parse_text(longest, h);
  EXPECT_EQ(ok.status, Status::complete);
  EXPECT_EQ(ok.size, kMaxV1);

  const std::string too_long = head + std::string(kMaxV1 - head.size() - 1, 'x') + "\r\n";
  EXPECT_EQ(parse_text(too_long.substr(0, kMaxV1 - 1), h).status, Status::incomplete);
  const auto bad = parse_text(too_long.substr(0, kMaxV1), h);
  EXPECT_EQ(bad.status, Status::invalid);
  EXPECT_EQ(parse_text(too_long, h).status, Status::invalid);
  EXPECT_EQ(parse_text(head + std::string(300, 'x'), h).status, Status::invalid);
}

TEST(ProxyProtocolTest, V1StrictSyntax) {
  // Verifies malformed v1 lines (ports, addresses, spacing, line ends) are invalid.
  for (std::string_view line : {
           "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",          // leading zero in a port
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n",          // "00"
           "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",       // port too large
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 999999\r\n",      // six digits
           "PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n",          // double space
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n",          // trailing space
           "PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",          // space before the first field
           "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",             // missing port
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",         // extra field
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 \r\n",            // empty port
           "PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n",          // leading zero in an octet
           "PROXY TCP4 256.2.3.4 5.6.7.8 1 2\r\n",         // octet too large
           "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",             // three octets
           "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",               // IPv6 in TCP4
           "PROXY TCP6 1.2.3.4 ::1 1 2\r\n",               // IPv4 in TCP6
           "PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",          // zone id
           "PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n",     // nine groups
           "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n",          // sign
           "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",          // sign
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",             // LF without CR
           "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",            // CR without LF
           "PROXY TCP4\r\n",                               // nothing after the protocol
           "PROXY UNKNOW\r\n",                             // truncated keyword
           "PROXY \r\n",                                   // no protocol
           "PROXY UNKNOWN\n",                              // LF without CR
       }) {
    Header h;
    const auto r = parse_text(line, h);
    EXPECT_EQ(r.status, Status::invalid) << line;
    EXPECT_FALSE(r.error.empty()) << line;
  }
}

TEST(ProxyProtocolTest, V2ProxyIpv4) {
  // Verifies a v2 PROXY TCP over IPv4 header decodes to its endpoints; payload is not consumed.
  Bytes b = v2_fixed(0x21, 0x11, 12);
  append_inet_block(b);
  const auto header_size = b.size();
  append(b, {'h', 'i'});
  Header h;
  const auto r = parse_bytes(b, h);
  ASSERT_EQ(r.status, Status::complete) << r.error;
  EXPECT_EQ(r.size, header_size);
  EXPECT_FALSE(h.local);
  EXPECT_EQ(h.source, ep("192.168.0.1", 56324));
  EXPECT_EQ(h.destination, ep("192.168.0.11", 443));
}

TEST(ProxyProtocolTest, V2ProxyIpv6) {
  // Verifies a v2 PROXY TCP over IPv6 header decodes to its endpoints.
  Bytes b = v2_fixed(0x21, 0x21, 36);
  append(b, {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01});  // 2001:db8::1
  append(b, {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01});              // ::1
  append(b, {0x04, 0xD2, 0x00, 0x50});                                          // 1234, 80
  Header h;
  expect_byte_at_a_time(b, h);
  EXPECT_FALSE(h.local);
  EXPECT_EQ(h.source, ep("2001:db8::1", 1234));
  EXPECT_EQ(h.destination, ep("::1", 80));
}

TEST(ProxyProtocolTest, V2Local) {
  // Verifies v2 LOCAL is local and its body (whatever the family says) is skipped whole.
  Header h;
  Bytes b = v2_fixed(0x20, 0x00, 0);
  auto r = parse_bytes(b, h);
  ASSERT_EQ(r.status, Status::complete) << r.error;
  EXPECT_EQ(r.size, 16u);
  EXPECT_TRUE(h.local);

  b = v2_fixed(0x20, 0xFF, 5);  // family ignored under LOCAL, body is not TLVs
  append(b, {1, 2, 3, 4, 5});
  h = Header{};
  r = parse_bytes(b, h);
  ASSERT_EQ(r.status, Status::complete) << r.error;
  EXPECT_EQ(r.size, 21u);
  EXPECT_TRUE(h.local);
  EXPECT_EQ(h.source, tcp::endpoint());
}

TEST(ProxyProtocolTest, V2UnusableAddressesAreLocal) {
  // Verifies PROXY with AF_UNSPEC, AF_UNIX or DGRAM is accepted as local (use own addresses).
  for (std::uint8_t family : {std::uint8_t{0x00}, std::uint8_t{0x31}, std::uint8_t{0x12},
                              std::uint8_t{0x10}}) {
    Bytes b = v2_fixed(0x21, family, 12);
    append_inet_block(b);
    Header h;
    const auto r = parse_bytes(b, h);
    ASSERT_EQ(r.status, Status::complete) << int{family} << " " << r.error;
    EXPECT_EQ(r.size, 28u);
    EXPECT_TRUE(h.local) << int{family};
  }
}

TEST(ProxyProtocolTest, V2AuthorityAndOtherTlvs) {
  // Verifies the AUTHORITY TLV is read and other TLVs (before and after it) are skipped.
  Bytes b = v2_fixed(0x21, 0x11, 12 + 4 + 3 + 11 + 8 + 3 + 1);
  append_inet_block(b);
  append(b, {0x04, 0x00, 0x01, 0x00});                                // NOOP, 1 byte
  append(b, {0x02, 0x00, 0x0B});                                      // AUTHORITY, 11 bytes
  for (char c : std::string_view("example.com")) b.push_back(static_cast<std::uint8_t>(c));
  append(b, {0x20, 0x00, 0x05, 0x01, 0x00, 0x00, 0x00, 0x00});        // SSL, 5 bytes
  append(b, {0x02, 0x00, 0x01, 'z'});                                 // second AUTHORITY
  Header h;
  expect_byte_at_a_time(b, h);
  EXPECT_EQ(h.authority, "example.com");
  EXPECT_EQ(h.source, ep("192.168.0.1", 56324));
}

TEST(ProxyProtocolTest, V2MalformedTlvIsInvalid) {
  // Verifies TLVs that do not tile the body exactly are invalid.
  Bytes b = v2_fixed(0x21, 0x11, 12 + 2);
  append_inet_block(b);
  append(b, {0x02, 0x00});  // only two bytes of a TLV header
  Header h;
  EXPECT_EQ(parse_bytes(b, h).status, Status::invalid);

  b = v2_fixed(0x21, 0x11, 12 + 3 + 2);
  append_inet_block(b);
  append(b, {0x02, 0x00, 0x03, 'a', 'b'});  // value announced 3, 2 present
  EXPECT_EQ(parse_bytes(b, h).status, Status::invalid);
}

TEST(ProxyProtocolTest, V2Limits) {
  // Verifies v2 whose announced length exceeds 4096 in all is invalid as soon as it is read.
  Header h;
  const auto over = v2_fixed(0x21, 0x11, static_cast<std::uint16_t>(kMaxV2 - 16 + 1));
  EXPECT_EQ(parse_bytes(Bytes(over.begin(), over.begin() + 15), h).status, Status::incomplete);
  EXPECT_EQ(parse_bytes(over, h).status, Status::invalid);
  EXPECT_EQ(parse_bytes(v2_fixed(0x21, 0x11, 0xFFFF), h).status, Status::invalid);

  Bytes at_limit = v2_fixed(0x21, 0x11, static_cast<std::uint16_t>(kMaxV2 - 16));
  EXPECT_EQ(parse_bytes(at_limit, h).status, Status::incomplete);
  append_inet_block(at_limit);
  const std::size_t filler = kMaxV2 - at_limit.size() - 3;
  append(at_limit, {0x04, static_cast<std::uint8_t>(filler >> 8),
                    static_cast<std::uint8_t>(filler & 0xFF)});
  at_limit.resize(kMaxV2, 0);
  const auto r = parse_bytes(at_limit, h);
  EXPECT_EQ(r.status, Status::complete) << r.error;
  EXPECT_EQ(r.size, kMaxV2);

  // An IPv4 body shorter than its address block.
  Bytes small = v2_fixed(0x21, 0x11, 11);
  EXPECT_EQ(parse_bytes(small, h).status, Status::invalid);
  small = v2_fixed(0x21, 0x21, 12);
  EXPECT_EQ(parse_bytes(small, h).status, Status::invalid);
}

TEST(ProxyProtocolTest, V2WrongVersionCommandFamily) {
  // Verifies a wrong version, command, family or transport nibble is invalid on that byte.
  Header h;
  for (std::uint8_t ver_cmd : {std::uint8_t{0x11}, std::uint8_t{0x31}, std::uint8_t{0x01},
                               std::uint8_t{0x22}, std::uint8_t{0x2F}}) {
    auto b = v2_fixed(ver_cmd, 0x11, 12);
    b.resize(13);
    EXPECT_EQ(parse_bytes(b, h).status, Status::invalid) << int{ver_cmd};
  }
  for (std::uint8_t family : {std::uint8_t{0x41}, std::uint8_t{0x13}, std::uint8_t{0xF1}}) {
    auto b = v2_fixed(0x21, family, 12);
    b.resize(14);
    EXPECT_EQ(parse_bytes(b, h).status, Status::invalid) << int{family};
  }
}

TEST(ProxyProtocolTest, EveryPrefixIsIncomplete) {
  // Verifies every proper prefix of encoded headers of both versions is incomplete.
  std::array<char, kMaxV1> line{};
  const auto n1 = encode_v1(ep("2001:db8::7", 65535), ep("10.0.0.1", 1), line);
  ASSERT_GT(n1, 0u);
  Header h;
  expect_byte_at_a_time(Bytes(line.begin(), line.begin() + static_cast<std::ptrdiff_t>(n1)), h);

  std::array<std::uint8_t, kMaxV2> binary{};
  const auto n2 = encode_v2(ep("10.0.0.1", 1), ep("10.0.0.2", 2), "host.example", binary);
  ASSERT_GT(n2, 0u);
  expect_byte_at_a_time(Bytes(binary.begin(), binary.begin() + static_cast<std::ptrdiff_t>(n2)),
                        h);
  EXPECT_EQ(h.authority, "host.example");
  for (auto v : {Version::v1, Version::v2}) {
    expect_byte_at_a_time(bytes_of(local_header(v)), h);
    EXPECT_TRUE(h.local);
  }
}

TEST(ProxyProtocolTest, RoundTrips) {
  // Verifies encode then parse gives the same endpoints; mixed families come back IPv4-mapped.
  struct Case {
    tcp::endpoint source, destination, want_source, want_destination;
  };
  const Case cases[] = {
      {ep("1.2.3.4", 1), ep("5.6.7.8", 65535), ep("1.2.3.4", 1), ep("5.6.7.8", 65535)},
      {ep("2001:db8::1", 443), ep("::1", 0), ep("2001:db8::1", 443), ep("::1", 0)},
      {ep("1.2.3.4", 10), ep("2001:db8::2", 20), ep("::ffff:1.2.3.4", 10),
       ep("2001:db8::2", 20)},
      {ep("2001:db8::1", 10), ep("127.0.0.1", 20), ep("2001:db8::1", 10),
       ep("::ffff:127.0.0.1", 20)},
      {ep("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
       ep("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535),
       ep("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
       ep("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535)},
  };
  for (const auto& c : cases) {
    std::array<char, kMaxV1> line{};
    const auto n1 = encode_v1(c.source, c.destination, line);
    ASSERT_GT(n1, 0u);
    ASSERT_LE(n1, kMaxV1);
    const std::string_view text(line.data(), n1);
    EXPECT_EQ(text.substr(0, 10), c.want_source.address().is_v6() ? "PROXY TCP6" : "PROXY TCP4");
    Header h1;
    const auto r1 = parse_text(text, h1);
    ASSERT_EQ(r1.status, Status::complete) << text << r1.error;
    EXPECT_EQ(r1.size, n1);
    EXPECT_EQ(h1.source, c.want_source) << text;
    EXPECT_EQ(h1.destination, c.want_destination) << text;

    std::array<std::uint8_t, kMaxV2> binary{};
    const auto n2 = encode_v2(c.source, c.destination, "", binary);
    ASSERT_GT(n2, 0u);
    EXPECT_EQ(binary[13], c.want_source.address().is_v6() ? 0x21 : 0x11);
    Header h2;
    const auto r2 = parse(std::span<const std::uint8_t>(binary.data(), n2), h2);
    ASSERT_EQ(r2.status, Status::complete) << r2.error;
    EXPECT_EQ(r2.size, n2);
    EXPECT_EQ(h2.source, c.want_source);
    EXPECT_EQ(h2.destination, c.want_destination);
    EXPECT_TRUE(h2.authority.empty());
  }
}

TEST(ProxyProtocolTest, V1ExactBytes) {
  // Verifies encode_v1 writes the spec's text line byte for byte.
  std::array<char, kMaxV1> out{};
  auto n = encode_v1(ep("192.168.0.1", 56324), ep("192.168.0.11", 443), out);
  EXPECT_EQ(std::string_view(out.data(), n), "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n");
  n = encode_v1(ep("2001:db8::1", 0), ep("::1", 80), out);
  EXPECT_EQ(std::string_view(out.data(), n), "PROXY TCP6 2001:db8::1 ::1 0 80\r\n");
  n = encode_v1(ep("10.0.0.1", 1234), ep("2001:db8::2", 80), out);
  EXPECT_EQ(std::string_view(out.data(), n), "PROXY TCP6 ::ffff:10.0.0.1 2001:db8::2 1234 80\r\n");
  std::array<char, 20> small{};
  EXPECT_EQ(encode_v1(ep("192.168.0.1", 56324), ep("192.168.0.11", 443), small), 0u);
}

TEST(ProxyProtocolTest, V2ExactBytes) {
  // Verifies encode_v2 writes the spec's binary layout byte for byte (IPv4 + AUTHORITY, IPv6).
  const Bytes want4 = {
      0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,  // signature
      0x21,                                                                    // v2, PROXY
      0x11,                                                                    // AF_INET, STREAM
      0x00, 0x1A,                                                              // 12 + 3 + 11
      0xC0, 0xA8, 0x00, 0x01,                                                  // 192.168.0.1
      0xC0, 0xA8, 0x00, 0x0B,                                                  // 192.168.0.11
      0xDC, 0x04,                                                              // 56324
      0x01, 0xBB,                                                              // 443
      0x02, 0x00, 0x0B,                                                        // AUTHORITY, 11
      'e',  'x',  'a',  'm',  'p',  'l',  'e',  '.',  'c',  'o',  'm'};
  std::array<std::uint8_t, kMaxV2> out{};
  auto n = encode_v2(ep("192.168.0.1", 56324), ep("192.168.0.11", 443), "example.com", out);
  EXPECT_EQ(Bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n)), want4);

  const Bytes want6 = {
      0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,  // signature
      0x21, 0x21, 0x00, 0x24,                        // v2 PROXY, AF_INET6 STREAM, 36
      0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,  // 2001:db8::1
      0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0x7F, 0, 0, 0x01,     // ::ffff:127.0.0.1
      0x04, 0xD2, 0x00, 0x50};                                        // 1234, 80
  n = encode_v2(ep("2001:db8::1", 1234), ep("127.0.0.1", 80), "", out);
  EXPECT_EQ(Bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(n)), want6);

  // Too small a buffer: nothing written.
  std::array<std::uint8_t, 30> small{};
  EXPECT_EQ(encode_v2(ep("192.168.0.1", 1), ep("192.168.0.11", 2), "example.com", small), 0u);
  std::array<std::uint8_t, 31> exact{};
  EXPECT_EQ(encode_v2(ep("192.168.0.1", 1), ep("192.168.0.11", 2), "example.com", exact), 0u);
  std::array<std::uint8_t, 42> fits{};
  EXPECT_EQ(encode_v2(ep("192.168.0.1", 1), ep("192.168.0.11", 2), "example.com", fits), 42u);
  EXPECT_EQ(encode_v2(ep("1.1.1.1", 1), ep("2.2.2.2", 2), std::string(kMaxV2, 'a'), out), 0u);
}

TEST(ProxyProtocolTest, LocalHeaderBytes) {
  // Verifies the probe headers: v1 "PROXY UNKNOWN\r\n", v2 16 bytes LOCAL AF_UNSPEC length 0.
  EXPECT_EQ(local_header(Version::v1), "PROXY UNKNOWN\r\n");
  EXPECT_TRUE(local_header(Version::off).empty());
  const auto v2 = local_header(Version::v2);
  const Bytes want = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51,
                      0x55, 0x49, 0x54, 0x0A, 0x20, 0x00, 0x00, 0x00};
  EXPECT_EQ(bytes_of(v2), want);
}

}  // namespace
}  // namespace pb::net::proxy
