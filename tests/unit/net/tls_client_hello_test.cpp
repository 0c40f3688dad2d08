#include "protobalance/net/tls_client_hello.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "support/tls_hello.hpp"

namespace pb::net::tls {
namespace {

using Bytes = std::vector<std::uint8_t>;

using test::real_client_hello;

Bytes bytes_of(std::string_view text) { return Bytes(text.begin(), text.end()); }

// Re-frames the handshake payload of `hello` (one record) into records of `chunk` bytes.
Bytes refragment(const Bytes& hello, std::size_t chunk) {
  Bytes out;
  const std::size_t payload = (std::size_t{hello[3]} << 8) | hello[4];
  for (std::size_t at = 5; at < 5 + payload; at += chunk) {
    const std::size_t n = std::min(chunk, 5 + payload - at);
    out.insert(out.end(), {0x16, 0x03, 0x01, static_cast<std::uint8_t>(n >> 8),
                           static_cast<std::uint8_t>(n & 0xFF)});
    out.insert(out.end(), hello.begin() + static_cast<std::ptrdiff_t>(at),
               hello.begin() + static_cast<std::ptrdiff_t>(at + n));
  }
  return out;
}

// Feeds `data` growing one byte at a time into one reader: incomplete on every proper prefix.
void expect_byte_at_a_time(const Bytes& data, ClientHelloReader& reader) {
  for (std::size_t n = 0; n < data.size(); ++n) {
    ASSERT_EQ(reader.read(std::span<const std::uint8_t>(data.data(), n)), Status::incomplete)
        << "prefix of " << n << " bytes: " << reader.error();
  }
  ASSERT_EQ(reader.read(data), Status::complete) << reader.error();
}

TEST(TlsClientHelloTest, RealHelloWithSni) {
  // Verifies a real OpenSSL ClientHello yields its server name, lower-cased and as sent.
  const Bytes hello = real_client_hello("Api.Example.COM");
  ASSERT_GT(hello.size(), 50u);
  ASSERT_EQ(hello[0], 0x16);
  ClientHelloReader reader;
  ASSERT_EQ(reader.read(hello), Status::complete) << reader.error();
  EXPECT_EQ(reader.server_name(), "api.example.com");
  EXPECT_EQ(reader.server_name_as_sent(), "Api.Example.COM");
  EXPECT_EQ(reader.size(), hello.size());
  // Further calls keep the decision.
  EXPECT_EQ(reader.read(hello), Status::complete);
}

TEST(TlsClientHelloTest, RealHelloWithoutSni) {
  // Verifies a ClientHello without the server_name extension is complete with no name
  // (TLS 1.3 and TLS 1.2-only clients).
  for (long version : {long{TLS1_3_VERSION}, long{TLS1_2_VERSION}}) {
    const Bytes hello = real_client_hello("", version);
    ASSERT_GT(hello.size(), 50u);
    ClientHelloReader reader;
    ASSERT_EQ(reader.read(hello), Status::complete) << reader.error();
    EXPECT_TRUE(reader.server_name().empty());
    EXPECT_EQ(reader.size(), hello.size());
  }
}

TEST(TlsClientHelloTest, ByteAtATime) {
  // Verifies a ClientHello fed one byte at a time stays incomplete until its last byte.
  const Bytes hello = real_client_hello("www.example.org");
  ClientHelloReader reader;
  expect_byte_at_a_time(hello, reader);
  EXPECT_EQ(reader.server_name(), "www.example.org");
}

TEST(TlsClientHelloTest, ManyRecords) {
  // Verifies a ClientHello split over many small records (and fed byte by byte) is read whole.
  const Bytes hello = real_client_hello("shop.example.net");
  for (std::size_t chunk : {std::size_t{1}, std::size_t{3}, std::size_t{7}, std::size_t{100}}) {
    const Bytes split = refragment(hello, chunk);
    ClientHelloReader whole;
    ASSERT_EQ(whole.read(split), Status::complete) << chunk << " " << whole.error();
    EXPECT_EQ(whole.server_name(), "shop.example.net");
    EXPECT_EQ(whole.size(), split.size());
    ClientHelloReader bytewise;
    expect_byte_at_a_time(split, bytewise);
    EXPECT_EQ(bytewise.server_name(), "shop.example.net");
  }
}

TEST(TlsClientHelloTest, TrailingBytesAreNotRead) {
  // Verifies bytes after the ClientHello's record (e.g. early data) neither change the result
  // nor count in size().
  Bytes hello = real_client_hello("a.example");
  const auto size = hello.size();
  hello.insert(hello.end(), {0x17, 0x03, 0x03, 0x00, 0x01, 0xAA, 0xFF});
  ClientHelloReader reader;
  ASSERT_EQ(reader.read(hello), Status::complete) << reader.error();
  EXPECT_EQ(reader.size(), size);
}

TEST(TlsClientHelloTest, GarbageIsInvalidEarly) {
  // Verifies input that is not TLS is refused at the first byte that shows it.
  struct Case {
    Bytes bytes;
    std::size_t decided_at;  // bytes needed to decide
  };
  const Case cases[] = {
      {bytes_of("GET / HTTP/1.1\r\n"), 1},
      {{0x80, 0x2E, 0x01, 0x03, 0x01}, 1},             // SSLv2-style hello
      {{0x15, 0x03, 0x01, 0x00, 0x02}, 1},             // alert record
      {{0x16, 0x02, 0x00}, 2},                         // record version 2.x
      {{0x16, 0x03, 0x05}, 3},                         // record version 3.5
      {{0x16, 0x03, 0x01, 0x00, 0x00}, 5},             // empty record
      {{0x16, 0x03, 0x01, 0x40, 0x01}, 5},             // record over 2^14
      {{0x16, 0x03, 0x01, 0x00, 0x04, 0x02}, 6},       // ServerHello, not ClientHello
      {{0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x40, 0x00}, 9},  // ClientHello of 16 KiB
  };
  for (const auto& c : cases) {
    for (std::size_t n = 1; n < c.decided_at; ++n) {
      ClientHelloReader reader;
      EXPECT_EQ(reader.read(std::span<const std::uint8_t>(c.bytes.data(), n)),
                Status::incomplete);
    }
    ClientHelloReader reader;
    EXPECT_EQ(reader.read(std::span<const std::uint8_t>(c.bytes.data(), c.decided_at)),
              Status::invalid)
        << int{c.bytes[0]} << " at " << c.decided_at;
    EXPECT_FALSE(reader.error().empty());
  }
}

TEST(TlsClientHelloTest, MalformedFieldsAreInvalid) {
  // Verifies corrupting each length field of a real ClientHello makes it invalid.
  const Bytes hello = real_client_hello("x.example");
  // Offsets: record header 5, handshake header 4, version 2, random 32 -> session id length.
  const std::size_t sid = 5 + 4 + 2 + 32;
  const std::size_t suites = sid + 1 + hello[sid];
  const std::size_t suites_length = (std::size_t{hello[suites]} << 8) | hello[suites + 1];
  const std::size_t compression = suites + 2 + suites_length;
  const std::size_t extensions = compression + 1 + hello[compression];

  const auto expect_invalid = [&](std::size_t offset, std::uint8_t value, const char* what) {
    Bytes bad = hello;
    bad[offset] = value;
    ClientHelloReader reader;
    EXPECT_EQ(reader.read(bad), Status::invalid) << what;
    // Also decided before the end when the corrupt field is early: never complete.
    ClientHelloReader bytewise;
    for (std::size_t n = 0; n <= bad.size(); ++n) {
      if (bytewise.read(std::span<const std::uint8_t>(bad.data(), n)) != Status::incomplete) {
        break;
      }
    }
    EXPECT_EQ(bytewise.status(), Status::invalid) << what;
  };
  expect_invalid(5 + 4, 0x02, "ClientHello version 2.x");
  expect_invalid(sid, 33, "session id over 32");
  expect_invalid(suites + 1, static_cast<std::uint8_t>(hello[suites + 1] | 1), "odd suites");
  expect_invalid(compression, 0, "no compression method");
  expect_invalid(extensions + 1, static_cast<std::uint8_t>(hello[extensions + 1] + 1),
                 "extensions length");
  expect_invalid(8, static_cast<std::uint8_t>(hello[8] ^ 1), "handshake length off by one");

  // Truncated: the record ends before the message does, and nothing follows.
  Bytes cut(hello.begin(), hello.end() - 10);
  ClientHelloReader reader;
  EXPECT_EQ(reader.read(cut), Status::incomplete);
}

TEST(TlsClientHelloTest, BadHostNameIsInvalid) {
  // Verifies a real ClientHello whose SNI is not a DNS name is invalid.
  for (const char* name : {"-bad.example", "bad..example", "bad.example.", "sp ace.example",
                           "bad-.example"}) {
    const Bytes hello = real_client_hello(name);
    ASSERT_FALSE(hello.empty()) << name;
    ClientHelloReader reader;
    EXPECT_EQ(reader.read(hello), Status::invalid) << name;
  }
}

TEST(TlsClientHelloTest, StreamBound) {
  // Verifies a stream that has not finished its ClientHello within 16 KiB is invalid.
  // A 12 KiB ClientHello announced, sent in 1-byte records: 6 bytes per message byte.
  Bytes stream;
  const auto record = [&](std::initializer_list<std::uint8_t> payload) {
    stream.insert(stream.end(), {0x16, 0x03, 0x01, 0x00, static_cast<std::uint8_t>(payload.size())});
    stream.insert(stream.end(), payload);
  };
  // Handshake header (12 KiB), version, then random (32), no session id, 8 KiB of suites.
  for (int b : {0x01, 0x00, 0x30, 0x00, 0x03, 0x03}) record({static_cast<std::uint8_t>(b)});
  for (int i = 0; i < 32; ++i) record({0x00});
  for (int b : {0x00, 0x20, 0x00}) record({static_cast<std::uint8_t>(b)});
  while (stream.size() < kMaxClientHelloBytes + 6) record({0x00});
  ClientHelloReader reader;
  EXPECT_EQ(reader.read(std::span<const std::uint8_t>(stream.data(), kMaxClientHelloBytes - 1)),
            Status::incomplete);
  EXPECT_EQ(reader.read(stream), Status::invalid);
}

TEST(TlsClientHelloTest, DnsNames) {
  // Verifies the host name check at its edges.
  EXPECT_TRUE(is_dns_name("a"));
  EXPECT_TRUE(is_dns_name("xn--bcher-kva.example"));
  EXPECT_TRUE(is_dns_name("_srv.Example.COM"));
  EXPECT_TRUE(is_dns_name(std::string(63, 'a') + ".b"));
  EXPECT_FALSE(is_dns_name(std::string(64, 'a') + ".b"));
  std::string longest;
  while (longest.size() < 253) longest += longest.empty() ? "a" : ".a";
  ASSERT_EQ(longest.size(), 253u);
  EXPECT_TRUE(is_dns_name(longest));
  EXPECT_FALSE(is_dns_name(longest + "a"));
  EXPECT_FALSE(is_dns_name(""));
  EXPECT_FALSE(is_dns_name("."));
  EXPECT_FALSE(is_dns_name("a..b"));
  EXPECT_FALSE(is_dns_name(".a"));
  EXPECT_FALSE(is_dns_name("a."));
  EXPECT_FALSE(is_dns_name("a-.b"));
  EXPECT_FALSE(is_dns_name("a.-b"));
  EXPECT_FALSE(is_dns_name("a b"));
  EXPECT_FALSE(is_dns_name(std::string_view("a\0b", 3)));
  EXPECT_FALSE(is_dns_name("*.example"));
}

}  // namespace
}  // namespace pb::net::tls
