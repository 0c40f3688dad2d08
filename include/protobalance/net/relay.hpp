#pragma once

#include <cstddef>
#include <cstdint>
#include <new>
#include <memory>
#include <utility>

#include <boost/asio/append.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>

#include "protobalance/net/buffer_pool.hpp"
#include "protobalance/net/io.hpp"
#include "protobalance/net/pipe_pool.hpp"
#include "protobalance/net/worker.hpp"

namespace pb::net {

// How a relay ended.
enum class RelayEnd : std::uint8_t {
  finished,         // both directions reached end of stream (half-closes passed on)
  node_closed_early,  // the node closed or reset before any byte moved either way: fall over
  client_error,     // reading from or writing to the client failed (reset, ...)
  node_error,       // reading from or writing to the node failed
  closed,           // closed locally: idle timeout, node taken offline, or stop
};

struct RelayResult {
  RelayEnd end = RelayEnd::finished;
  std::uint64_t bytes_to_node = 0;
  std::uint64_t bytes_to_client = 0;
};

// Memory for the one Asio operation a relay direction can have pending (a yield to other
// sessions after a burst), so that it allocates nothing. A request that does not fit falls
// back to the heap.
class OpSlot {
 public:
  // Fits Asio 1.26's post operation with a Resume handler on the io_context executor: 64
  // bytes, measured (the only size requested during a bulk transfer's yields).
  static constexpr std::size_t kSize = 64;
  static constexpr std::size_t kAlign = alignof(void*);
  OpSlot() = default;
  OpSlot(const OpSlot&) = delete;
  OpSlot& operator=(const OpSlot&) = delete;

  void* allocate(std::size_t size, std::size_t align) {
    if (!used_ && size <= kSize && align <= kAlign) {
      used_ = true;
      return storage_;
    }
    return ::operator new(size, std::align_val_t(align));
  }
  void deallocate(void* p, std::size_t size, std::size_t align) {
    if (p == storage_) {
      used_ = false;
      return;
    }
    ::operator delete(p, size, std::align_val_t(align));
  }

 private:
  alignas(kAlign) std::byte storage_[kSize];
  bool used_ = false;
};

// The allocator Asio uses for a direction's pending operation (found through the completion
// handler's get_allocator()).
template <typename T>
class OpSlotAllocator {
 public:
  using value_type = T;
  explicit OpSlotAllocator(OpSlot& slot) noexcept : slot_(&slot) {}
  template <typename U>
  OpSlotAllocator(const OpSlotAllocator<U>& other) noexcept : slot_(other.slot()) {}
  T* allocate(std::size_t n) { return static_cast<T*>(slot_->allocate(n * sizeof(T), alignof(T))); }
  void deallocate(T* p, std::size_t n) noexcept { slot_->deallocate(p, n * sizeof(T), alignof(T)); }
  OpSlot* slot() const noexcept { return slot_; }
  template <typename U>
  bool operator==(const OpSlotAllocator<U>& other) const noexcept {
    return slot_ == other.slot();
  }

 private:
  OpSlot* slot_;
};

// Moves bytes both ways between a client and a node socket until both directions have ended:
// the two directions are joined (the relay completes when both are done), never raced, so an
// end of stream on one side is passed on as shutdown(send) to the other while the other
// direction keeps flowing (half-close). A hard error on either side ends both directions.
//
// A direction that fills its buffer (a bulk transfer) moves on to splice(): bytes go from one
// socket to the other through a pipe borrowed from the worker's pool, without being copied
// through user space (measured in BENCHMARKS.md).
//
// Each direction is a small readiness-driven state machine rather than a coroutine. Both
// sockets are in the worker's Poller, so waiting for readiness is a state, not an operation:
// an idle connection holds no buffer, no coroutine frame of its own, no pending operation and
// no heap block besides this object. Readiness first: a direction borrows a buffer from the
// worker's pool only while it has bytes to move, and keeps it across a wait only when the
// receiver is not taking them. `entry.last_tick` is stamped on every transfer for the idle
// sweeper.
//
// With `allow_early_close`, a node that closes before any byte moved ends the relay with
// node_closed_early and leaves the client socket untouched, so the caller can try another node.
class Relay {
 public:
  Relay(const Relay&) = delete;
  Relay& operator=(const Relay&) = delete;

  // The poller has news about one of the relay's sockets (a PollSlot::Notify).
  static void on_poll(void* relay, PollSlot& slot);
  // Ends the relay as `closed` (idle timeout, node offline, stop). Completes later, never from
  // within this call.
  static void abort(Relay& relay);
  // The worker is being destroyed: destroys the relay unless an operation of it is still in
  // Asio's queues (then that operation's destruction does it).
  static void abandon_if_idle(Relay& relay);

 protected:
  Relay(Fd& client, Fd& node, Worker& worker, SessionEntry& entry, bool allow_early_close);
  virtual ~Relay();

  // Starts both directions. Calls complete() once both have ended.
  void start();
  RelayResult result() const;
  Executor executor() const { return worker_.context().get_executor(); }

  // Both directions have ended: deliver result() and destroy this object, without running the
  // caller's continuation from within (an event batch of the poller may be in progress).
  virtual void complete() = 0;
  // The relay's pending operations were destroyed without running (the worker's io_context
  // is being destroyed): destroy this object without completing.
  virtual void abandon() = 0;

 private:
  enum class End : std::uint8_t { none, eof, read_error, write_error, aborted, early_close };
  enum class State : std::uint8_t { running, waiting_read, waiting_write, yielding, ended };

  struct Direction {
    Direction(Relay* r, Fd& f, Fd& t, PollSlot& fs, PollSlot& ts, bool node_side)
        : relay(r), from(&f), to(&t), from_slot(&fs), to_slot(&ts), from_node(node_side) {}
    Relay* relay;
    Fd* from;
    Fd* to;
    PollSlot* from_slot;
    PollSlot* to_slot;
    std::uint64_t bytes = 0;
    // A borrowed buffer (see BufferPool::Lease::release) with bytes the receiver has not taken
    // yet; null except while waiting for room to write.
    std::unique_ptr<std::byte[]> pending;
    std::uint32_t write_offset = 0;  // of `pending` or `pipe` while waiting for room to write
    std::uint32_t write_size = 0;
    Pipe pipe;  // borrowed while splicing bytes are in it; read == -1 when none
    bool from_node;
    bool splicing = false;     // bulk: splice() through `pipe` instead of copying
    bool can_splice = true;    // false once no pipe could be had (out of descriptors)
    State state = State::running;
    End end = End::none;
    OpSlot slot;
  };

  // The completion handler of a direction's yield to other sessions. Carries one pointer; its
  // memory comes from the direction's slot. While it exists it keeps the relay alive.
  class Resume {
   public:
    using allocator_type = OpSlotAllocator<void>;
    explicit Resume(Direction& d) : d_(&d) { ++d.relay->pending_; }
    Resume(Resume&& other) noexcept : d_(std::exchange(other.d_, nullptr)) {}
    Resume& operator=(Resume&&) = delete;
    ~Resume() {
      if (d_ != nullptr) d_->relay->on_dropped();
    }
    allocator_type get_allocator() const noexcept { return allocator_type(d_->slot); }
    void operator()(const boost::system::error_code&) {
      Direction* d = std::exchange(d_, nullptr);
      d->relay->on_resumed(*d);
    }

   private:
    Direction* d_;
  };

  bool register_sockets();
  void pump(Direction& d);
  void pump_spliced(Direction& d);
  // A read returned `got` of `asked` bytes: true if the socket may have more (a full read, or a
  // FIN already seen behind the bytes), else marks it drained.
  static bool may_have_more(Direction& d, std::size_t got, std::size_t asked);
  // Moves the bytes in `d.pipe` to `d.to` from `d.write_offset`; false on a hard error.
  static bool flush_pipe(Direction& d);
  void release_pipe(Direction& d, bool empty);
  void continue_write(Direction& d);
  void give_back(Direction& d);
  // Sends [data + done, data + size); false on a hard error (`done` says how far it got).
  static bool send_some(Direction& d, const std::byte* data, std::size_t size, std::size_t& done);
  void wait_read(Direction& d);
  void wait_write(Direction& d);
  void yield(Direction& d);
  void end(Direction& d, End how);
  // Ends a direction that is waiting on the poller (nothing of it is in flight).
  void end_waiting(Direction& d);
  void on_resumed(Direction& d);
  void on_dropped();
  void finish_if_done();
  Direction& other(const Direction& d) { return &d == &up_ ? down_ : up_; }

  Worker& worker_;
  SessionEntry& entry_;
  Direction up_;    // client -> node
  Direction down_;  // node -> client
  int pending_ = 0;  // operations in flight in Asio's queues (yields)
  bool allow_early_close_;
  bool consumed_ = false;  // a byte was read from either side: no fall-over from here on
  bool completed_ = false;
  bool stopping_ = false;  // a hard error ended one direction: the other ends at its next step
};

namespace detail {

template <typename Handler>
class RelayOperation final : public Relay {
 public:
  RelayOperation(Handler handler, Fd& client, Fd& node, Worker& worker, SessionEntry& entry,
                 bool allow_early_close)
      : Relay(client, node, worker, entry, allow_early_close), handler_(std::move(handler)) {}

  void begin() { start(); }

 private:
  void complete() override {
    Handler handler = std::move(handler_);
    const RelayResult r = result();
    auto executor = boost::asio::get_associated_executor(handler, this->executor());
    delete this;
    boost::asio::post(executor, boost::asio::append(std::move(handler), r));
  }
  void abandon() override {
    Handler handler = std::move(handler_);  // destroyed after this object: it owns the session
    delete this;
  }

  Handler handler_;
};

}  // namespace detail

// Relays between `client` and `node` (see Relay) and completes with the RelayResult. Both
// sockets, `worker` and `entry` must outlive the operation.
template <typename CompletionToken>
auto async_relay(Fd& client, Fd& node,
                 Worker& worker, SessionEntry& entry, bool allow_early_close,
                 CompletionToken&& token) {
  return boost::asio::async_initiate<CompletionToken, void(RelayResult)>(
      [&client, &node, &worker, &entry, allow_early_close](auto handler) {
        using Op = detail::RelayOperation<std::decay_t<decltype(handler)>>;
        (new Op(std::move(handler), client, node, worker, entry, allow_early_close))->begin();
      },
      token);
}

}  // namespace pb::net
