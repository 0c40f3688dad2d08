#pragma once

// The guards of a listener as client phases (client_phase.hpp): who may connect (allow/deny),
// how many connections and how fast per client (max_client_connections, max_client_rate), what
// the first bytes must look like ([listener.validate]) and which cluster a TLS server name goes
// to ([[listener.route]]). Each runs on the client the PROXY header named, before a node is
// chosen; a listener without guards gets no phase and pays nothing.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "protobalance/config/config.hpp"
#include "protobalance/net/block_list.hpp"
#include "protobalance/net/address_filter.hpp"
#include "protobalance/net/client_limits.hpp"
#include "protobalance/net/client_phase.hpp"
#include "protobalance/net/first_bytes_validator.hpp"
#include "protobalance/net/sni_routes.hpp"

namespace pb::net {

// Checks the guard settings the config area reads but cannot judge: the address blocks of
// allow/deny, the max_client_rate syntax, the validate expression and the SNI patterns. Appends
// one diagnostic per problem (at the entry's position). Run at load and reload, with the other
// checks of a loaded file, so that `--check` and a reload refuse what would not work.
void validate_guards(const config::Config& cfg, std::vector<config::Diagnostic>& errors);

// Logs a refused client at info level at most once a minute per client address (the debug log
// has every connection): a flood of refusals from one source does not flood the log. Bounded:
// a fixed table of slots indexed by a hash of the address; two clients that share a slot may
// each be logged more often than once a minute.
class RefusalLog {
 public:
  // True if a refusal of `client` should be logged now.
  bool should_log(const boost::asio::ip::address& client,
                  std::chrono::steady_clock::time_point now) const;

 private:
  static constexpr std::size_t kSlots = 1024;
  mutable std::array<std::atomic<std::uint64_t>, kSlots> last_{};  // address tag | minute
};

// allow/deny and the per-client limits: decides from the client's address alone (no bytes).
// The limits' state (ClientLimits) is shared by every worker and kept across reloads that leave
// the limits as they are; an admitted client holds a ticket in its ClientFacts until it closes.
class ClientAdmission final : public ClientPhase {
 public:
  ClientAdmission(std::string listener, AddressFilter filter, std::shared_ptr<ClientLimits> limits)
      : listener_(std::move(listener)), filter_(std::move(filter)), limits_(std::move(limits)) {}

  std::string_view name() const override { return "client admission"; }
  std::chrono::milliseconds timeout() const override { return std::chrono::seconds(1); }
  std::size_t max_peek() const override { return 0; }
  RejectReason reject_reason() const override { return RejectReason::denied; }
  Verdict inspect(std::span<const std::uint8_t> peeked, bool peer_closed,
                  ClientFacts& facts) const override;

 private:
  Verdict refuse(const ClientFacts& facts, RejectReason reason, std::string_view why) const;

  std::string listener_;
  AddressFilter filter_;
  std::shared_ptr<ClientLimits> limits_;  // null without max_client_connections and rate
  RefusalLog log_;
};

// The block list set at run time (block_list.hpp): refuses a client that a block in force
// covers on this listener. It decides from the address alone (no bytes). The runtime gives a
// listener this phase only while some block applies to it, first among the guards (a blocked
// client spends none of its rate); the entries themselves are read from the shared list at
// each connection, so a change of them needs no new phase.
class BlockCheck final : public ClientPhase {
 public:
  BlockCheck(std::string listener, std::shared_ptr<const BlockList> blocks)
      : listener_(std::move(listener)), blocks_(std::move(blocks)) {}

  std::string_view name() const override { return "block list"; }
  std::chrono::milliseconds timeout() const override { return std::chrono::seconds(1); }
  std::size_t max_peek() const override { return 0; }
  RejectReason reject_reason() const override { return RejectReason::blocked; }
  Verdict inspect(std::span<const std::uint8_t> peeked, bool peer_closed,
                  ClientFacts& facts) const override;

 private:
  std::string listener_;
  std::shared_ptr<const BlockList> blocks_;
  RefusalLog log_;
};

// [listener.validate]: waits for the client's first bytes (peeked, left on the stream for the
// node) until they match the expression; a mismatch, max_bytes without a match, an end of
// stream or the timeout closes the client.
class FirstBytesCheck final : public ClientPhase {
 public:
  FirstBytesCheck(FirstBytesValidator validator, std::chrono::milliseconds timeout)
      : validator_(std::move(validator)), timeout_(timeout) {}

  std::string_view name() const override { return "first-bytes validation"; }
  std::chrono::milliseconds timeout() const override { return timeout_; }
  std::size_t max_peek() const override { return validator_.max_bytes(); }
  RejectReason reject_reason() const override { return RejectReason::validation; }
  Verdict inspect(std::span<const std::uint8_t> peeked, bool peer_closed,
                  ClientFacts& facts) const override;

 private:
  FirstBytesValidator validator_;
  std::chrono::milliseconds timeout_;
};

// [[listener.route]]: reads the TLS ClientHello (peeked, left on the stream for the node, up to
// tls::kMaxClientHelloBytes) and records its server name and the first route it matches in the
// ClientFacts; the connection then takes that route's cluster. Not TLS, or malformed: closed.
class SniPeek final : public ClientPhase {
 public:
  SniPeek(SniRoutes routes, std::chrono::milliseconds timeout)
      : routes_(std::move(routes)), timeout_(timeout) {}

  std::string_view name() const override { return "TLS ClientHello"; }
  std::chrono::milliseconds timeout() const override { return timeout_; }
  std::size_t max_peek() const override;
  RejectReason reject_reason() const override { return RejectReason::tls; }
  Verdict inspect(std::span<const std::uint8_t> peeked, bool peer_closed,
                  ClientFacts& facts) const override;

 private:
  SniRoutes routes_;
  std::chrono::milliseconds timeout_;
};

// Builds the guard phases of each listener, and keeps each listener's per-client state across
// reloads while its limits stay the same (running connections keep their counts). Used on the
// control thread only.
class ListenerGuards {
 public:
  // The guard phases of `listener` in order (admission, TLS ClientHello, first bytes); empty
  // for a listener without guards. `listener` has passed validate_guards.
  std::vector<std::shared_ptr<const ClientPhase>> phases(const config::ListenerConfig& listener);

 private:
  struct Limits {
    ClientLimits::Options options;
    std::shared_ptr<ClientLimits> state;
  };
  std::map<std::string, Limits, std::less<>> limits_;  // by listener name
};

}  // namespace pb::net
