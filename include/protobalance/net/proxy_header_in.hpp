#pragma once

#include <chrono>
#include <vector>

#include "protobalance/config/config.hpp"
#include "protobalance/net/client_phase.hpp"

namespace pb::net {

// The client phase of a listener with `accept_proxy = true`: the connection comes from another
// balancer and starts with a PROXY protocol header (v1 or v2, detected from the first bytes)
// naming the real client, which from then on is the connection's client (affinity, hash, logs,
// PROXY header out). A source outside `trusted` (empty: any source) is refused at once; a
// malformed or oversized header at its first wrong byte; a header not complete after `timeout`
// at the deadline. v2 LOCAL and v1 UNKNOWN keep the connection's own addresses. Exactly the
// header's bytes are taken off the stream.
class ProxyHeaderIn final : public ClientPhase {
 public:
  ProxyHeaderIn(std::vector<config::Network> trusted, std::chrono::milliseconds timeout)
      : trusted_(std::move(trusted)), timeout_(timeout) {}

  std::string_view name() const override { return "PROXY header in"; }
  std::chrono::milliseconds timeout() const override { return timeout_; }
  std::size_t max_peek() const override;
  RejectReason reject_reason() const override { return RejectReason::proxy; }
  Verdict inspect(std::span<const std::uint8_t> peeked, bool peer_closed,
                  ClientFacts& facts) const override;

  bool trusts(const boost::asio::ip::address& source) const;

 private:
  std::vector<config::Network> trusted_;
  std::chrono::milliseconds timeout_;
};

}  // namespace pb::net
