#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

#include "protobalance/affinity/client_key.hpp"
#include "protobalance/balance/cluster.hpp"
#include "protobalance/net/access_record.hpp"
#include "protobalance/net/client_phase.hpp"
#include "protobalance/net/io.hpp"
#include "protobalance/net/poller.hpp"
#include "protobalance/net/relay.hpp"
#include "protobalance/net/session.hpp"
#include "protobalance/net/worker.hpp"

namespace pb::net {

// Why a connection was closed from outside its own course.
enum class CloseCause : std::uint8_t {
  none,
  idle,      // no byte moved for the cluster's idle_timeout (the worker's sweeper)
  operator_, // node set offline, or the end of a graceful stop's shutdown_timeout
};

// One client connection from accept to close, and everything it holds: both sockets, their
// registrations in the worker's poller, its deadline, the node it is attached to, the relay.
// Owned by its worker (Worker::adopt), touched only on the worker's thread. It moves through
// phases, each with a deadline where it waits for the network:
//
//   client phases (Route::client_phases: PROXY header in, ...)  deadline: the phase's timeout
//   -> twin lookup (a client unknown locally, with [twin])       deadline: lookup_timeout + margin
//   -> choose a node (affinity, algorithm, fall-over chain)
//   -> connect                                                   deadline: connect_timeout
//   -> node phase (PROXY header out, when the node wants one)    deadline: connect_timeout
//   -> relay (until both directions ended)                       idle_timeout (the wheel)
//   -> closed
//
// A failed connect, a failed header write, or a node closing before any byte moved sends it
// back to "choose" (fall-over) with the node marked as tried. Every way it ends -- finished,
// an error, no node, a client phase's reject, idle, closed by an operator -- goes through
// finish(): accounting, access log, sockets closed, handed to the worker to be freed.
class Connection : public ConnectionHook {
 public:
  enum class Phase : std::uint8_t { client, lookup, choose, connect, node, relay, closed };

  // `peer`: the client's address as accept() reported it.
  Connection(Worker& worker, std::shared_ptr<const Route> route, Fd client,
             const boost::asio::ip::tcp::endpoint& peer);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Runs the connection's first steps, up to its first wait. Call once, after Worker::adopt.
  void start();
  // Closes the connection now (the idle sweeper, Worker::close_connections). No-op if closed.
  void close(CloseCause cause);

  Phase phase() const { return phase_; }
  bool closed() const { return phase_ == Phase::closed; }
  // The client: accept()'s peer, or the address a PROXY header in named.
  const boost::asio::ip::tcp::endpoint& client() const { return facts_.source; }
  // The listener that accepted it.
  const std::string& listener() const { return route_->listener; }
  // The node the connection is connecting or relaying to, if any.
  const balance::NodeRuntime* node_runtime() const;

  // For the worker's idle wheel: the worker tick of the last byte moved, and the idle timeout
  // in ticks (0: none).
  std::uint64_t last_tick = 0;
  std::uint64_t idle_ticks = 0;

 private:
  static void on_poll(void* self, PollSlot& slot);
  static void on_deadline(void* self, bool abandoned);
  static void on_turn(void* self);

  bool enter_client_phase();
  void run_client_phases();
  void take_sni_route();
  bool look_up_affinity();
  void on_shared_answer(std::optional<std::string> answer);
  void record_affinity(std::uint32_t served);
  void choose_node();
  void next_node();
  void connect_node();
  void on_connect_result(const boost::system::error_code& ec);
  void node_phase();
  void continue_header();
  void relay();
  void after_relay_step();
  void on_relay_done();
  bool register_client();
  bool blocked_meanwhile() const;
  void reject(RejectReason reason, std::string_view outcome);
  void finish(std::string_view outcome);
  void release_node();

  Worker& worker_;
  std::shared_ptr<const Route> route_;
  Fd client_fd_;
  Fd node_fd_;
  PollSlot client_slot_;
  PollSlot node_slot_;
  Deadline deadline_{&Connection::on_deadline, this};
  Turn turn_{&Connection::on_turn, this};
  ClientFacts facts_;
  Relay relay_;
  balance::TriedSet tried_;
  std::unique_ptr<AccessRecord> log_;  // only with an access log
  // While a twin lookup is out: the answer, posted to this worker, finds the connection through
  // it, or finds it cleared when the connection closed meanwhile (worker thread only).
  struct LookupTicket {
    Connection* connection;
  };
  std::shared_ptr<LookupTicket> lookup_ticket_;
  std::unique_ptr<std::uint8_t[]> header_;  // PROXY header out not yet sent (rarely needed)
  std::chrono::steady_clock::time_point started_;  // for the access log's duration
  std::chrono::steady_clock::time_point connect_started_;
  affinity::ClientKey affinity_key_;
  std::int32_t affine_ = -1;     // the client's affinity node (-1: none, or no longer configured)
  std::int32_t preferred_ = -1;  // the next choose() prefers it (affinity, then fall-over chain)
  std::int32_t node_ = -1;       // the chosen node while it holds a slot of it (release_node)
  // The block list's version when the client phases began (blocked_meanwhile); 0 = not read.
  std::uint64_t blocks_version_ = 0;
  std::uint16_t header_offset_ = 0;
  std::uint16_t header_size_ = 0;
  std::uint8_t client_phase_ = 0;  // index into route_->client_phases
  Phase phase_ = Phase::client;
  CloseCause cause_ = CloseCause::none;
  bool affinity_enabled_ = false;
  bool had_affinity_record_ = false;
  bool counted_ = false;
};

}  // namespace pb::net
