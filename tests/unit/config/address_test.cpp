#include "protobalance/config/address.hpp"

#include <gtest/gtest.h>

#include <string>
#include <variant>

namespace pb::config {
namespace {

Endpoint must_parse(std::string_view text, bool allow_port_zero = false) {
  auto result = parse_endpoint(text, allow_port_zero);
  if (const auto* error = std::get_if<std::string>(&result)) {
    ADD_FAILURE() << "'" << text << "': " << *error;
    return {};
  }
  return std::get<Endpoint>(result);
}

// The error text for `text`, or a marker that makes the caller's expectation fail.
std::string error_of(std::string_view text, bool allow_port_zero = false) {
  auto result = parse_endpoint(text, allow_port_zero);
  if (const auto* error = std::get_if<std::string>(&result)) {
    return *error;
  }
  return "<parsed as " + std::get<Endpoint>(result).address().to_string() + ">";
}

bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

TEST(ParseEndpoint, ParsesIpv4) {
  // Verifies that a dotted IPv4 address and port become that exact endpoint.
  const Endpoint ep = must_parse("192.0.2.10:8080");
  EXPECT_TRUE(ep.address().is_v4());
  EXPECT_EQ(ep.address().to_string(), "192.0.2.10");
  EXPECT_EQ(ep.port(), 8080);
  EXPECT_EQ(must_parse("0.0.0.0:65535").port(), 65535);
  EXPECT_EQ(must_parse("1.2.3.4:1").port(), 1);
}

TEST(ParseEndpoint, ParsesBracketedIpv6) {
  // Verifies that "[v6]:port" yields an IPv6 endpoint, including the unspecified and full forms.
  const Endpoint loopback = must_parse("[::1]:80");
  EXPECT_TRUE(loopback.address().is_v6());
  EXPECT_TRUE(loopback.address().is_loopback());
  EXPECT_EQ(loopback.port(), 80);
  const Endpoint any = must_parse("[::]:443");
  EXPECT_TRUE(any.address().is_unspecified());
  EXPECT_EQ(must_parse("[2001:db8::1:2]:9000").address().to_string(), "2001:db8::1:2");
}

TEST(ParseEndpoint, ResolvesLocalhostPreferringIpv4) {
  // Verifies that a host name is resolved at parse time and that the IPv4 address wins for
  // localhost.
  const Endpoint ep = must_parse("localhost:9001");
  EXPECT_EQ(ep.address().to_string(), "127.0.0.1");
  EXPECT_EQ(ep.port(), 9001);
}

TEST(ParseEndpoint, PortZeroOnlyWhenAllowed) {
  // Verifies that port 0 is accepted for listeners (allow_port_zero) and refused otherwise.
  EXPECT_EQ(must_parse("127.0.0.1:0", true).port(), 0);
  EXPECT_TRUE(contains(error_of("127.0.0.1:0"), "port must be 1..65535"))
      << error_of("127.0.0.1:0");
}

TEST(ParseEndpoint, RejectsBadPorts) {
  // Verifies that ports out of range or not plain decimal are refused with the range in the
  // message.
  for (const char* bad : {"1.2.3.4:65536", "1.2.3.4:99999999", "1.2.3.4:", "1.2.3.4:-1",
                          "1.2.3.4:+80", "1.2.3.4:8a", "1.2.3.4: 80", "[::1]:70000"}) {
    EXPECT_TRUE(contains(error_of(bad), "port must be 1..65535")) << bad << " -> " << error_of(bad);
  }
  EXPECT_TRUE(contains(error_of("1.2.3.4:65536", true), "port must be 0..65535"));
}

TEST(ParseEndpoint, RejectsTextWithoutHostAndPort) {
  // Verifies that a missing port or host is explained with an example of the expected form.
  for (const char* bad :
       {"", "8080", "1.2.3.4", "localhost", ":80", "[::1]", "[::1]80", "[::1", "[]:80"}) {
    EXPECT_TRUE(contains(error_of(bad), "expected host:port, e.g. 127.0.0.1:8080"))
        << bad << " -> " << error_of(bad);
  }
}

TEST(ParseEndpoint, AsksForBracketsAroundIpv6) {
  // Verifies that an unbracketed IPv6 address gets the hint to use brackets instead of a resolver
  // error.
  EXPECT_TRUE(contains(error_of("::1:80"), "IPv6 addresses need brackets: [::1]:80"))
      << error_of("::1:80");
  EXPECT_TRUE(contains(error_of("2001:db8::1:443"), "IPv6 addresses need brackets"));
}

TEST(ParseEndpoint, RejectsInvalidAddressLiterals) {
  // Verifies that malformed numeric addresses are refused rather than reinterpreted by the
  // resolver.
  EXPECT_TRUE(contains(error_of("10.0.1:80"), "'10.0.1' is not a valid IPv4 address"))
      << error_of("10.0.1:80");
  EXPECT_TRUE(contains(error_of("256.1.1.1:80"), "is not a valid IPv4 address"));
  EXPECT_TRUE(contains(error_of("[1.2.3.4]:80"), "'1.2.3.4' is not a valid IPv6 address"));
  EXPECT_TRUE(contains(error_of("[::g]:80"), "is not a valid IPv6 address"));
}

TEST(ParseEndpoint, ReportsUnresolvableNames) {
  // Verifies that a name the resolver does not know is reported with the name and the resolver's
  // reason.
  // ".invalid" is reserved (RFC 2606) and never resolves.
  const std::string error = error_of("no-such-host.invalid:80");
  EXPECT_TRUE(contains(error, "cannot resolve 'no-such-host.invalid': ")) << error;
  EXPECT_GT(error.size(), std::string_view("cannot resolve 'no-such-host.invalid': ").size())
      << error;
}

}  // namespace
}  // namespace pb::config
