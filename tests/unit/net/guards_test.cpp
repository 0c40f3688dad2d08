#include "protobalance/net/guards.hpp"

#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "support/tls_hello.hpp"

namespace pb::net {
namespace {

namespace ip = boost::asio::ip;
using namespace std::chrono_literals;

constexpr std::string_view kClusters = R"([[cluster]]
name = "c"
[[cluster.node]]
name = "n"
address = "127.0.0.1:1"
[[cluster]]
name = "api"
[[cluster.node]]
name = "a"
address = "127.0.0.1:2"
[[listener]]
name = "l"
listen = "127.0.0.1:0"
cluster = "c"
)";

// The listener of a configuration made of kClusters and `keys` (for the [[listener]]).
config::LoadResult load(std::string_view keys) {
  return config::load_string(std::string(kClusters) + std::string(keys), "test.toml", "/etc/pb");
}

config::ListenerConfig listener(std::string_view keys) {
  const auto result = load(keys);
  EXPECT_NE(result.config, nullptr);
  return result.config ? result.config->listeners.at(0) : config::ListenerConfig{};
}

ClientFacts from(const char* address) {
  ClientFacts facts;
  facts.source = ip::tcp::endpoint(ip::make_address(address), 40000);
  return facts;
}

std::span<const std::uint8_t> bytes(std::string_view text) {
  return {reinterpret_cast<const std::uint8_t*>(text.data()), text.size()};
}

Verdict admit(const ClientPhase& phase, ClientFacts& facts) {
  return phase.inspect({}, false, facts);
}

TEST(GuardsTest, ValidationReportsEveryBadValueAtItsEntry) {
  // Verifies that validate_guards reports a bad address block, a bad rate, a bad expression and
  // a bad SNI pattern, each at its own position, and accepts good ones.
  const auto result = load(R"(allow = ["192.0.2.0/24", "192.0.2.1/24"]
deny = ["2001:db8::/129"]
max_client_rate = "20 per second"
[listener.validate]
expect = '(GET'
[[listener.route]]
sni = ["ok.example", "bad..example"]
cluster = "api"
)");
  ASSERT_NE(result.config, nullptr);
  std::vector<config::Diagnostic> errors;
  validate_guards(*result.config, errors);
  ASSERT_EQ(errors.size(), 5U);
  const auto at = [&](std::size_t i, std::uint32_t line, std::uint32_t column,
                      std::string_view needle) {
    EXPECT_EQ(errors[i].pos.line, line) << errors[i].to_string();
    EXPECT_EQ(errors[i].pos.column, column) << errors[i].to_string();
    EXPECT_NE(errors[i].message.find(needle), std::string::npos) << errors[i].to_string();
  };
  at(0, 15, 26, "allow:");
  at(1, 16, 9, "deny:");
  at(2, 17, 19, "max_client_rate:");
  at(3, 19, 10, "expect is not a valid regular expression");
  at(4, 21, 22, "sni:");

  const auto good = load(R"(allow = ["192.0.2.0/24", "10.0.0.0/8", "2001:db8::/32"]
max_client_rate = "300/1m"
[listener.validate]
expect = '(?i)^hello'
[[listener.route]]
sni = ["*", "*.example.com"]
cluster = "api"
)");
  ASSERT_NE(good.config, nullptr);
  errors.clear();
  validate_guards(*good.config, errors);
  EXPECT_TRUE(errors.empty()) << errors.front().to_string();
}

TEST(GuardsTest, AnUnguardedListenerGetsNoPhase) {
  // Verifies that a listener without guards pays nothing: no client phase at all.
  ListenerGuards guards;
  EXPECT_TRUE(guards.phases(listener("")).empty());
}

TEST(GuardsTest, AllowAndDenyWithBothFamiliesAndMappedAddresses) {
  // Verifies allow/deny on the client's address: deny wins, an IPv4-mapped IPv6 source is its
  // IPv4 address, and a refused client counts as `denied`.
  ListenerGuards guards;
  const auto phases = guards.phases(listener(R"(allow = ["192.0.2.0/24", "2001:db8::/32"]
deny = ["192.0.2.66"]
)"));
  ASSERT_EQ(phases.size(), 1U);
  const ClientPhase& phase = *phases[0];
  EXPECT_EQ(phase.max_peek(), 0U);
  for (const char* ok : {"192.0.2.1", "::ffff:192.0.2.1", "2001:db8::1"}) {
    auto facts = from(ok);
    EXPECT_EQ(admit(phase, facts).kind, Verdict::Kind::pass) << ok;
  }
  for (const char* refused : {"192.0.2.66", "::ffff:192.0.2.66", "198.51.100.1", "2001:db9::1"}) {
    auto facts = from(refused);
    const auto verdict = admit(phase, facts);
    EXPECT_EQ(verdict.kind, Verdict::Kind::reject) << refused;
    EXPECT_EQ(verdict.reason, RejectReason::denied) << refused;
  }
}

TEST(GuardsTest, ConnectionLimitHoldsTicketsAndSurvivesAnUnchangedReload) {
  // Verifies max_client_connections: the second concurrent connection of a client (IPv6 by
  // its /64) is refused as client_limit while the first holds its ticket; the count survives
  // a rebuild with the same limits, and a changed limit starts afresh.
  ListenerGuards guards;
  const auto config = listener("max_client_connections = 1\n");
  const auto phases = guards.phases(config);
  ASSERT_EQ(phases.size(), 1U);
  auto first = from("2001:db8:1:2::1");
  ASSERT_EQ(admit(*phases[0], first).kind, Verdict::Kind::pass);
  EXPECT_TRUE(first.client_ticket.holds());
  auto same_64 = from("2001:db8:1:2::99");
  const auto refused = admit(*phases[0], same_64);
  EXPECT_EQ(refused.kind, Verdict::Kind::reject);
  EXPECT_EQ(refused.reason, RejectReason::client_limit);
  auto other_64 = from("2001:db8:1:3::1");
  EXPECT_EQ(admit(*phases[0], other_64).kind, Verdict::Kind::pass);

  const auto reloaded = guards.phases(config);
  auto again = from("2001:db8:1:2::2");
  EXPECT_EQ(admit(*reloaded[0], again).reason, RejectReason::client_limit);
  first.client_ticket.release();
  EXPECT_EQ(admit(*reloaded[0], again).kind, Verdict::Kind::pass);

  const auto changed = guards.phases(listener("max_client_connections = 2\n"));
  auto fresh = from("2001:db8:1:2::3");
  EXPECT_EQ(admit(*changed[0], fresh).kind, Verdict::Kind::pass);
}

TEST(GuardsTest, RateLimitRefusesPastTheBurst) {
  // Verifies max_client_rate: a burst of N connections, then client_rate; other clients are
  // not affected.
  ListenerGuards guards;
  const auto phases = guards.phases(listener("max_client_rate = \"3/1h\"\n"));
  ASSERT_EQ(phases.size(), 1U);
  for (int i = 0; i < 3; ++i) {
    auto facts = from("10.0.0.1");
    EXPECT_EQ(admit(*phases[0], facts).kind, Verdict::Kind::pass) << i;
  }
  auto fourth = from("10.0.0.1");
  EXPECT_EQ(admit(*phases[0], fourth).reason, RejectReason::client_rate);
  auto other = from("10.0.0.2");
  EXPECT_EQ(admit(*phases[0], other).kind, Verdict::Kind::pass);
}

TEST(GuardsTest, FirstBytesCheckWaitsMatchesAndRefuses) {
  // Verifies the validation phase: more while a match is possible, pass without consuming on a
  // match, reject on a mismatch or an end of stream before a match.
  ListenerGuards guards;
  const auto phases = guards.phases(listener(R"([listener.validate]
timeout = "2s"
max_bytes = 16
expect = '^(GET|POST) /'
)"));
  ASSERT_EQ(phases.size(), 1U);
  const ClientPhase& phase = *phases[0];
  EXPECT_EQ(phase.timeout(), 2s);
  EXPECT_EQ(phase.max_peek(), 16U);
  EXPECT_EQ(phase.reject_reason(), RejectReason::validation);
  ClientFacts facts = from("10.0.0.1");
  EXPECT_EQ(phase.inspect({}, false, facts).kind, Verdict::Kind::more);
  EXPECT_EQ(phase.inspect(bytes("PO"), false, facts).kind, Verdict::Kind::more);
  const auto matched = phase.inspect(bytes("POST /x HTTP/1.1"), false, facts);
  EXPECT_EQ(matched.kind, Verdict::Kind::pass);
  EXPECT_EQ(matched.consume, 0U);
  EXPECT_EQ(phase.inspect(bytes("PUT /"), false, facts).kind, Verdict::Kind::reject);
  EXPECT_EQ(phase.inspect(bytes("GE"), true, facts).kind, Verdict::Kind::reject);
  EXPECT_EQ(phase.inspect({}, true, facts).kind, Verdict::Kind::reject);
}

TEST(GuardsTest, SniPeekRecordsTheNameAndTheRoute) {
  // Verifies the SNI phase on real ClientHellos (OpenSSL): the name as sent, the first matching
  // route, no route for an unmatched name or no SNI, more on a partial hello, tls on garbage.
  ListenerGuards guards;
  const auto phases = guards.phases(listener(R"([[listener.route]]
sni = ["api.example.com", "*.api.example.com"]
cluster = "api"
[[listener.route]]
sni = ["www.example.com"]
cluster = "c"
)"));
  ASSERT_EQ(phases.size(), 1U);
  const ClientPhase& phase = *phases[0];
  EXPECT_EQ(phase.timeout(), 5s);
  EXPECT_EQ(phase.reject_reason(), RejectReason::tls);

  const auto expect_route = [&](const std::string& name, std::int32_t route) {
    const auto hello = test::real_client_hello(name);
    ASSERT_FALSE(hello.empty());
    ClientFacts facts = from("10.0.0.1");
    EXPECT_EQ(phase.inspect({hello.data(), hello.size() / 2}, false, facts).kind,
              Verdict::Kind::more);
    const auto verdict = phase.inspect(hello, false, facts);
    EXPECT_EQ(verdict.kind, Verdict::Kind::pass) << name;
    EXPECT_EQ(verdict.consume, 0U);
    EXPECT_EQ(facts.server_name, name);
    EXPECT_EQ(facts.sni_route, route) << name;
  };
  expect_route("API.example.com", 0);
  expect_route("x.api.example.com", 0);
  expect_route("www.example.com", 1);
  expect_route("other.example.com", -1);
  expect_route("", -1);

  ClientFacts facts = from("10.0.0.1");
  EXPECT_EQ(phase.inspect(bytes("GET / HTTP/1.1\r\n"), false, facts).kind, Verdict::Kind::reject);
  EXPECT_EQ(phase.inspect({}, true, facts).kind, Verdict::Kind::reject);
}

TEST(GuardsTest, PhasesComeInOrderAdmissionTlsValidation) {
  // Verifies the order of a listener with every guard, and that the SNI phase takes the
  // validation's timeout.
  ListenerGuards guards;
  const auto phases = guards.phases(listener(R"(deny = ["10.0.0.0/8"]
[listener.validate]
timeout = "750ms"
expect = '^\x16'
[[listener.route]]
sni = ["*"]
cluster = "api"
)"));
  ASSERT_EQ(phases.size(), 3U);
  EXPECT_EQ(phases[0]->reject_reason(), RejectReason::denied);
  EXPECT_EQ(phases[1]->reject_reason(), RejectReason::tls);
  EXPECT_EQ(phases[1]->timeout(), 750ms);
  EXPECT_EQ(phases[2]->reject_reason(), RejectReason::validation);
}

TEST(GuardsTest, RefusalLogOncePerMinutePerClient) {
  // Verifies the info-log limiter: once per client and minute, again the next minute.
  RefusalLog log;
  const auto t0 = std::chrono::steady_clock::time_point{} + 10h;
  const auto a = ip::make_address("192.0.2.1");
  const auto b = ip::make_address("2001:db8::1");
  EXPECT_TRUE(log.should_log(a, t0));
  EXPECT_FALSE(log.should_log(a, t0 + 1s));
  EXPECT_TRUE(log.should_log(b, t0 + 1s));
  EXPECT_FALSE(log.should_log(b, t0 + 2s));
  EXPECT_TRUE(log.should_log(a, t0 + 61s));
}

}  // namespace
}  // namespace pb::net
