#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "protobalance/net/buffer_pool.hpp"
#include "protobalance/net/io.hpp"
#include "protobalance/net/pipe_pool.hpp"
#include "protobalance/net/poller.hpp"

namespace pb::net {

// How a relay ended.
enum class RelayEnd : std::uint8_t {
  finished,           // both directions reached end of stream (half-closes passed on)
  node_closed_early,  // the node closed or reset before any byte moved either way: fall over
  client_error,       // reading from or writing to the client failed (reset, ...)
  node_error,         // reading from or writing to the node failed
  closed,             // closed locally: idle timeout, node taken offline, or stop
};
std::string_view to_string(RelayEnd end);

struct RelayResult {
  RelayEnd end = RelayEnd::finished;
  std::uint64_t bytes_to_node = 0;
  std::uint64_t bytes_to_client = 0;
};

// The relay phase of a connection: moves bytes both ways between a client and a node socket
// until both directions have ended. The two directions are joined, never raced: an end of
// stream on one side is passed on as shutdown(SHUT_WR) to the other while the other direction
// keeps flowing (half-close). A hard error on either side ends both directions.
//
// A direction that fills its buffer (a bulk transfer) moves on to splice(): bytes go from one
// socket to the other through a pipe borrowed from the worker's pool, without being copied
// through user space (measured in BENCHMARKS.md).
//
// Each direction is a small readiness-driven state machine. Both sockets are in the worker's
// Poller, so waiting for readiness is a state, not an operation: an idle relay holds no
// buffer, no pipe and no pending operation. A direction borrows a buffer only while it has
// bytes to move, and keeps it across a wait only when the receiver is not taking them.
//
// A plain component of its owner (Connection), which forwards the sockets' events (on_poll),
// gives a yielding direction its turn later (yielding() / resume()) and reads the outcome
// (done() / result()). It calls nothing back: the owner looks at its state after each call.
//
// What a relay does when a side ends its stream.
struct RelayOptions {
  // A node that closes before any byte moved ends the relay with node_closed_early and leaves
  // the client socket untouched, so the owner can try another node.
  bool allow_early_close = false;
  // Either side's end of stream (FIN) is passed on and the other side may go on sending
  // (TCP half-close). false: the node's end of stream ends the relay once its last bytes are
  // delivered (what the client still had for the node is dropped), so that closing both
  // sockets sends both FINs and the client's own FIN is not waited for; a client's end of
  // stream is still passed on to the node.
  bool half_close = true;
};

class Relay {
 public:
  Relay() = default;
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;
  ~Relay();

  // Starts both directions; the sockets' slots must be registered in the worker's poller. A
  // direction whose slot is not marked readable waits for the poller's event before its first
  // read. Everything passed must outlive the relay's run (until done()).
  void start(Fd& client, Fd& node, PollSlot& client_slot, PollSlot& node_slot, BufferPool& buffers,
             PipePool& pipes, RelayOptions options);
  // The poller has news about one of the relay's sockets.
  void on_poll(const PollSlot& slot);
  // Gives the directions that yielded (yielding()) their turn.
  void resume();
  // Ends both directions now (idle timeout, node offline, stop); done() afterwards.
  void abort();

  bool running() const { return started_ && !done(); }
  bool done() const { return up_.state == State::ended && down_.state == State::ended; }
  // A direction stopped after a burst with bytes still waiting: call resume() after the
  // worker's other work had a turn.
  bool yielding() const { return up_.state == State::yielding || down_.state == State::yielding; }
  // True once if bytes moved since the last call (the owner stamps its idle clock).
  bool take_activity() { return std::exchange(activity_, false); }
  RelayResult result() const;

 private:
  // cut: the direction was ended because the other one's stream ended (half_close false).
  enum class End : std::uint8_t { none, eof, read_error, write_error, aborted, early_close, cut };
  enum class State : std::uint8_t { idle, running, waiting_read, waiting_write, yielding, ended };

  struct Direction {
    Fd* from = nullptr;
    Fd* to = nullptr;
    PollSlot* from_slot = nullptr;
    PollSlot* to_slot = nullptr;
    std::uint64_t bytes = 0;
    // A borrowed buffer (see BufferPool::Lease::release) with bytes the receiver has not taken
    // yet; null except while waiting for room to write.
    std::unique_ptr<std::byte[]> pending;
    std::uint32_t write_offset = 0;  // of `pending` or `pipe` while waiting for room to write
    std::uint32_t write_size = 0;
    Pipe pipe;  // borrowed while splicing bytes are in it; read == -1 when none
    bool from_node = false;
    bool splicing = false;   // bulk: splice() through `pipe` instead of copying
    bool can_splice = true;  // false once no pipe could be had (out of descriptors)
    State state = State::idle;
    End end = End::none;
  };

  void pump(Direction& d);
  void pump_spliced(Direction& d);
  // What a read of `got` of `asked` bytes says about the socket: it may have more (a full
  // read), it is drained (marked so), or its stream has ended (the FIN was behind the bytes).
  enum class AfterRead : std::uint8_t { more, drained, ended };
  static AfterRead after_read(Direction& d, std::size_t got, std::size_t asked);
  // Moves the bytes in `d.pipe` to `d.to` from `d.write_offset`; false on a hard error.
  static bool flush_pipe(Direction& d);
  void release_pipe(Direction& d, bool empty);
  void continue_write(Direction& d);
  void give_back(Direction& d);
  // Sends [data + done, data + size); false on a hard error (`done` says how far it got).
  static bool send_some(Direction& d, const std::byte* data, std::size_t size, std::size_t& done);
  void end(Direction& d, End how);
  // Ends a direction that is not in the middle of a step (waiting or yielding).
  void end_waiting(Direction& d, End how = End::aborted);
  Direction& other(const Direction& d) { return &d == &up_ ? down_ : up_; }

  BufferPool* buffers_ = nullptr;
  PipePool* pipes_ = nullptr;
  Direction up_;    // client -> node
  Direction down_;  // node -> client
  RelayOptions options_;
  bool consumed_ = false;  // a byte was read from either side: no fall-over from here on
  bool stopping_ = false;  // a hard error or abort ended one direction: the other ends next
  bool started_ = false;
  bool activity_ = false;
};

}  // namespace pb::net
