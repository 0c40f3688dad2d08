#include "protobalance/net/guards.hpp"

#include <functional>
#include <string_view>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "protobalance/net/tls_client_hello.hpp"

namespace pb::net {
namespace {

using config::Diagnostic;
using config::PlacedText;

// A CidrSet of address blocks that passed validate_guards (a bad one would be skipped).
CidrSet cidr_set(const std::vector<PlacedText>& blocks) {
  CidrSet set;
  for (const auto& block : blocks) {
    if (const auto parsed = config::parse_network(block.text); parsed.network) {
      set.insert(*parsed.network);
    }
  }
  return set;
}

std::vector<std::string> texts(const std::vector<PlacedText>& placed) {
  std::vector<std::string> out;
  out.reserve(placed.size());
  for (const auto& p : placed) out.push_back(p.text);
  return out;
}

ClientLimits::Options limits_options(const config::ListenerConfig& listener) {
  ClientLimits::Options options;
  options.max_connections = listener.max_client_connections;
  if (!listener.max_client_rate.text.empty()) {
    options.rate = parse_rate_limit(listener.max_client_rate.text).limit;
  }
  return options;
}

bool same_limits(const ClientLimits::Options& a, const ClientLimits::Options& b) {
  return a.max_connections == b.max_connections && a.rate == b.rate && a.capacity == b.capacity;
}

// The SNI phase waits as long as the first-bytes validation would, or 5 s without one.
std::chrono::milliseconds client_hello_timeout(const config::ListenerConfig& listener) {
  return listener.validate ? listener.validate->timeout : std::chrono::seconds(5);
}

// Logs a refused client at info level, at most once a minute per client (see RefusalLog).
void log_refusal(const RefusalLog& log, std::string_view listener,
                 const boost::asio::ip::address& client, std::string_view why) {
  if (spdlog::should_log(spdlog::level::info) &&
      log.should_log(client, std::chrono::steady_clock::now())) {
    spdlog::info("{}: client {} refused: {} (logged once a minute per client)", listener,
                 client.to_string(), why);
  }
}

}  // namespace

void validate_guards(const config::Config& cfg, std::vector<Diagnostic>& errors) {
  const std::string file = cfg.file.string();
  const auto report = [&](config::SourcePos pos, std::string message) {
    errors.push_back(Diagnostic{file, pos, std::move(message)});
  };
  for (const auto& listener : cfg.listeners) {
    for (const auto* list : {&listener.allow, &listener.deny}) {
      for (const auto& block : *list) {
        if (auto parsed = config::parse_network(block.text); !parsed.network) {
          report(block.pos, fmt::format("{}: {}", list == &listener.allow ? "allow" : "deny",
                                        parsed.error));
        }
      }
    }
    if (!listener.max_client_rate.text.empty()) {
      if (auto parsed = parse_rate_limit(listener.max_client_rate.text); !parsed.limit) {
        report(listener.max_client_rate.pos, fmt::format("max_client_rate: {}", parsed.error));
      }
    }
    if (listener.validate) {
      std::string error;
      if (!FirstBytesValidator::create(listener.validate->expect.text, listener.validate->max_bytes,
                                       error)) {
        report(listener.validate->expect.pos,
               fmt::format("expect is not a valid regular expression: {}", error));
      }
    }
    for (const auto& route : listener.routes) {
      for (const auto& pattern : route.sni) {
        if (auto problem = SniRoutes::check_pattern(pattern.text)) {
          report(pattern.pos, fmt::format("sni: {}", *problem));
        }
      }
    }
  }
}

bool RefusalLog::should_log(const boost::asio::ip::address& client,
                            std::chrono::steady_clock::time_point now) const {
  const auto bytes = client.is_v4() ? boost::asio::ip::make_address_v6(
                                          boost::asio::ip::v4_mapped, client.to_v4())
                                          .to_bytes()
                                    : client.to_v6().to_bytes();
  const std::size_t hash = std::hash<std::string_view>{}(
      std::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size()));
  const auto minute = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::minutes>(now.time_since_epoch()).count());
  // The slot holds the address's tag (the hash's high bits) and the minute it was last logged;
  // a different client or a later minute replaces it.
  const std::uint64_t value = (static_cast<std::uint64_t>(hash) & ~std::uint64_t{0xFFFFFF}) |
                              (minute & 0xFFFFFF);
  auto& slot = last_[hash % kSlots];
  return slot.exchange(value, std::memory_order_relaxed) != value;
}

Verdict ClientAdmission::refuse(const ClientFacts& facts, RejectReason reason,
                                std::string_view why) const {
  log_refusal(log_, listener_, facts.source.address(), why);
  return Verdict::reject(why, reason);
}

Verdict ClientAdmission::inspect(std::span<const std::uint8_t>, bool, ClientFacts& facts) const {
  const auto& client = facts.source.address();
  if (!filter_.allows(client)) return refuse(facts, RejectReason::denied, "source not allowed");
  if (!limits_) return Verdict::pass();
  auto admission = limits_->admit(client, ClientLimits::Clock::now());
  switch (admission.verdict) {
    case ClientLimits::Verdict::connection_limit:
      return refuse(facts, RejectReason::client_limit, "max_client_connections reached");
    case ClientLimits::Verdict::rate_limit:
      return refuse(facts, RejectReason::client_rate, "max_client_rate exceeded");
    case ClientLimits::Verdict::accepted:
      break;
  }
  facts.client_ticket = std::move(admission.ticket);
  return Verdict::pass();
}

Verdict BlockCheck::inspect(std::span<const std::uint8_t>, bool, ClientFacts& facts) const {
  const auto& client = facts.source.address();
  if (!blocks_->current_here().blocks(client, listener_, BlockClock::now())) {
    return Verdict::pass();
  }
  log_refusal(log_, listener_, client, "blocked");
  return Verdict::reject("blocked");
}

Verdict FirstBytesCheck::inspect(std::span<const std::uint8_t> peeked, bool peer_closed,
                                 ClientFacts&) const {
  switch (validator_.check(peeked)) {
    case FirstBytesValidator::Result::match:
      return Verdict::pass();  // the bytes stay on the stream for the node
    case FirstBytesValidator::Result::mismatch:
      return Verdict::reject("first bytes do not match validate.expect");
    case FirstBytesValidator::Result::need_more:
      break;
  }
  return peer_closed ? Verdict::reject("closed before the first bytes matched") : Verdict::more();
}

std::size_t SniPeek::max_peek() const { return tls::kMaxClientHelloBytes; }

Verdict SniPeek::inspect(std::span<const std::uint8_t> peeked, bool peer_closed,
                         ClientFacts& facts) const {
  // A fresh reader each time: the phase is shared by every connection and keeps no state of
  // one; a ClientHello is read again from byte 0 as more segments arrive (a few KiB at most).
  tls::ClientHelloReader reader;
  switch (reader.read(peeked)) {
    case tls::Status::incomplete:
      return peer_closed ? Verdict::reject("closed within the ClientHello") : Verdict::more();
    case tls::Status::invalid:
      return Verdict::reject(reader.error());
    case tls::Status::complete:
      break;
  }
  facts.server_name = reader.server_name_as_sent();
  if (const auto route = routes_.match(reader.server_name())) {
    facts.sni_route = static_cast<std::int32_t>(*route);
  }
  return Verdict::pass();  // the ClientHello stays on the stream for the node
}

std::vector<std::shared_ptr<const ClientPhase>> ListenerGuards::phases(
    const config::ListenerConfig& listener) {
  std::vector<std::shared_ptr<const ClientPhase>> phases;
  const ClientLimits::Options options = limits_options(listener);
  std::shared_ptr<ClientLimits> state;
  if (options.max_connections != 0 || options.rate) {
    auto& kept = limits_[listener.name];
    if (!kept.state || !same_limits(kept.options, options)) {
      kept = Limits{options, ClientLimits::create(options)};
    }
    state = kept.state;
  } else {
    limits_.erase(listener.name);
  }
  if (!listener.allow.empty() || !listener.deny.empty() || state) {
    phases.push_back(std::make_shared<const ClientAdmission>(
        listener.name, AddressFilter(cidr_set(listener.allow), cidr_set(listener.deny)),
        std::move(state)));
  }
  if (!listener.routes.empty()) {
    SniRoutes routes;
    for (const auto& route : listener.routes) routes.add(texts(route.sni));
    phases.push_back(
        std::make_shared<const SniPeek>(std::move(routes), client_hello_timeout(listener)));
  }
  if (listener.validate) {
    std::string error;
    if (auto validator = FirstBytesValidator::create(listener.validate->expect.text,
                                                     listener.validate->max_bytes, error)) {
      phases.push_back(std::make_shared<const FirstBytesCheck>(std::move(*validator),
                                                               listener.validate->timeout));
    }
  }
  return phases;
}

}  // namespace pb::net
