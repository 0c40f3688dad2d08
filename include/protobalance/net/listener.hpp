#pragma once

#include <atomic>
#include <cstdint>
#include <memory>

#include <boost/asio/ip/tcp.hpp>

#include "protobalance/net/session.hpp"
#include "protobalance/net/worker.hpp"

namespace pb::net {

// Counters shared by all acceptors of the process (read by the control plane and metrics).
struct AcceptStats {
  std::atomic<std::uint64_t> pauses{0};  // accept paused because descriptors ran out
};

// Opens a listening socket on `endpoint` with SO_REUSEPORT, so that every worker can have its
// own acceptor on the same address and the kernel spreads new connections across them.
// Throws boost::system::system_error when the address cannot be bound. `context` is only for
// opening and binding (the control thread's): the Listener takes the socket out of it.
Acceptor open_acceptor(boost::asio::io_context& context,
                       const boost::asio::ip::tcp::endpoint& endpoint);

// One listener's acceptor on one worker. Accepted connections become sessions on the same
// worker (Connection). The listening socket is in the worker's Poller: accept4() until EAGAIN (in batches,
// so that a flood of connects does not starve the worker's other work) each time it signals.
// Everything but construction happens on the worker's thread.
class Listener : public std::enable_shared_from_this<Listener> {
 public:
  // Takes the listening socket out of Asio's hands (it is used only to open and bind it).
  Listener(Worker& worker, Acceptor acceptor,
           std::shared_ptr<const Route> route, AcceptStats& stats);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Starts accepting (call on the worker's thread).
  void start();
  // Stops accepting and closes the listening socket: further connects are refused.
  void close();
  // Sends new connections to another route (route command or reload); running sessions keep
  // the route they started with.
  void set_route(std::shared_ptr<const Route> route) { route_ = std::move(route); }
  const std::shared_ptr<const Route>& route() const { return route_; }

 private:
  static void on_poll(void* listener, PollSlot& slot);
  static void on_continue(void* listener);
  static void on_pause_over(void* listener, bool abandoned);
  void accept_some();
  void pause(int error);

  Worker& worker_;
  int fd_ = -1;
  PollSlot slot_;
  // Both unlinked by close(); a listener is destroyed on its worker's thread (the last
  // reference is the posted close's) or after the worker stopped.
  Turn continuation_{&Listener::on_continue, this};
  Deadline pause_{&Listener::on_pause_over, this};
  std::shared_ptr<const Route> route_;
  AcceptStats& stats_;
  bool paused_ = false;  // out of descriptors: resting until pause_ expires
  bool warned_descriptors_ = false;
};

}  // namespace pb::net
