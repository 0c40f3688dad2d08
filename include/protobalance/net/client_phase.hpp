#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include <boost/asio/ip/tcp.hpp>

#include "protobalance/net/client_limits.hpp"

namespace pb::net {

// Why a listener closed a client without serving it.
enum class RejectReason : std::uint8_t {
  no_node,
  descriptors,
  proxy,
  denied,        // source refused by allow/deny
  client_limit,  // max_client_connections reached
  client_rate,   // max_client_rate exceeded
  validation,    // first bytes do not match [listener.validate]
  tls,           // not a TLS ClientHello where [[listener.route]] expects one
  blocked,       // source on the block list set at run time (pbadmin block)
};
inline constexpr std::size_t kRejectReasons = 9;
std::string_view to_string(RejectReason reason);

// What the client phases learn about a connection before a node is chosen. The connection
// starts it from accept(); a phase may replace it (a PROXY header names the real client).
struct ClientFacts {
  boost::asio::ip::tcp::endpoint source;  // the client: affinity key, hash, logs, PROXY out
  // The address the client connected to; unspecified until a phase sets it (the PROXY header
  // out then asks the client socket for its local address).
  boost::asio::ip::tcp::endpoint destination;
  bool has_destination = false;
  // The server name of the client's TLS ClientHello as it was sent (empty: none, or no SNI
  // routes), and the [[listener.route]] it chose (-1: the listener's own cluster).
  std::string server_name;
  std::int32_t sni_route = -1;
  // Held while the connection is open, when the listener limits connections per client.
  ClientLimits::Ticket client_ticket;
};

// A phase's answer to the bytes seen so far.
struct Verdict {
  enum class Kind : std::uint8_t { pass, more, reject };
  Kind kind = Kind::more;
  std::size_t consume = 0;  // pass: bytes to take off the stream (the rest goes to the node)
  std::string_view why;     // reject: a short static reason for the debug log
  // reject: the reason counted, when the phase has more than one (else its reject_reason()).
  std::optional<RejectReason> reason;

  static Verdict pass(std::size_t consume = 0) { return {Kind::pass, consume, {}, {}}; }
  static Verdict more() { return {Kind::more, 0, {}, {}}; }
  static Verdict reject(std::string_view why) { return {Kind::reject, 0, why, {}}; }
  static Verdict reject(std::string_view why, RejectReason reason) {
    return {Kind::reject, 0, why, reason};
  }
};

// One step a connection takes on the client's side before a node is chosen (the model is
// Envoy's listener filter): a PROXY header in today; an access check, a rate limit, a TLS SNI
// peek, a first-bytes check later. A phase is a const object shared by every connection of a
// listener (built with the listener's Route), so it keeps no per-connection state: it looks
// at every byte received so far (peeked, not taken off the stream) each time more arrive, and
// says pass (taking `consume` bytes off the stream), more, or reject. A connection whose
// listener has no phase pays one empty() check for the mechanism.
//
// The connection owns the waiting: it peeks (MSG_PEEK) up to max_peek() bytes whenever the
// client socket has news, and closes the client, counting reject_reason(), on reject, on an end
// of stream while the phase wants more, and when timeout() passes.
class ClientPhase {
 public:
  virtual ~ClientPhase() = default;
  virtual std::string_view name() const = 0;
  virtual std::chrono::milliseconds timeout() const = 0;
  // Bytes the phase may need to see; more than that without a verdict is a reject. 0: the
  // phase decides from the facts alone (called once, without peeking).
  virtual std::size_t max_peek() const = 0;
  virtual RejectReason reject_reason() const = 0;
  // `peeked`: the bytes received and not consumed so far (maybe none); `peer_closed`: no more
  // will come.
  virtual Verdict inspect(std::span<const std::uint8_t> peeked, bool peer_closed,
                          ClientFacts& facts) const = 0;
};

}  // namespace pb::net
