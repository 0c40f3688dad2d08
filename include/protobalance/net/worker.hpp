#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <thread>
#include <vector>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/intrusive/list.hpp>

#include "protobalance/balance/node.hpp"
#include "protobalance/net/buffer_pool.hpp"
#include "protobalance/net/io.hpp"
#include "protobalance/net/pipe_pool.hpp"
#include "protobalance/net/poller.hpp"

namespace pb::net {

// Links an object into one of its worker's lists; unlinks itself when destroyed.
using SessionHook =
    boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;

// What a worker knows about one of its live client connections: enough to close it on idle
// timeout, when its node goes offline, or at the end of a graceful stop. Lives in the session's
// coroutine frame and unlinks itself when the session ends. Touched only by its worker's thread.
class Relay;
struct PendingConnect;

struct SessionEntry : SessionHook {
  Fd* client = nullptr;
  Fd* node = nullptr;  // null until a node is connected
  const balance::NodeRuntime* node_runtime = nullptr;
  Relay* relay = nullptr;             // while relaying
  PendingConnect* connect = nullptr;  // while waiting for a connect to complete
  // The sockets' registrations in the worker's Poller (the client's spans fall-overs).
  PollSlot client_slot;
  PollSlot node_slot;
  std::uint64_t last_tick = 0;   // worker tick of the last byte moved
  std::uint64_t idle_ticks = 0;  // 0 = no idle timeout
  bool idle_expired = false;
  bool killed = false;  // closed by an operator (node offline) or by the end of a graceful stop

  // Ends the session, never from within this call: a relay or a connect in progress ends
  // (as closed, or operation_aborted) and the session then closes its sockets.
  void close();
};

// A connect to a node in progress, with its deadline (see Worker::watch_connect); leaving the
// watch list is automatic when it is destroyed.
struct PendingConnect : SessionHook {
  std::chrono::steady_clock::time_point deadline;
  // The deadline passed (the worker has unlinked it).
  virtual void expire() = 0;
  // The session is being closed.
  virtual void cancel() = 0;
  // The worker is being destroyed: destroy without completing.
  virtual void abandon() = 0;

 protected:
  virtual ~PendingConnect() = default;
};

// One worker thread with its own io_context (concurrency hint 1): every session accepted on it
// stays on it, so per-session state needs no locks.
class Worker {
 public:
  // `wheel_slots`: size of the idle-timeout wheel (see wheel_); tests make it small.
  Worker(unsigned index, std::chrono::milliseconds tick, std::size_t wheel_slots = 1024);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  unsigned index() const { return index_; }
  boost::asio::io_context& context() { return context_; }
  BufferPool& buffers() { return buffers_; }
  PipePool& pipes() { return pipes_; }
  Poller& poller() { return poller_; }

  // The coarse clock sessions stamp their activity with; advanced by the idle sweeper.
  std::uint64_t tick() const { return tick_; }
  std::chrono::milliseconds tick_interval() const { return tick_interval_; }
  // Ticks of idle time that make `timeout` (0 for no timeout).
  std::uint64_t ticks_for(std::chrono::milliseconds timeout) const;

  void track(SessionEntry& entry);
  // Calls `pending.expire()` if `pending` is still linked `timeout` from now. One timer per
  // worker serves every connect in progress, so a connect arms no timer of its own; it is
  // re-armed only when it fires or when a deadline comes before the armed one.
  void watch_connect(PendingConnect& pending, std::chrono::milliseconds timeout);
  // Closes, on this worker's thread, every session for which `match` is true; returns how many.
  std::size_t close_sessions(const std::function<bool(const SessionEntry&)>& match);
  // Sessions live on this worker; safe to read from any thread.
  std::size_t active_sessions() const { return active_.load(std::memory_order_relaxed); }
  void session_started() { active_.fetch_add(1, std::memory_order_relaxed); }
  void session_ended() { active_.fetch_sub(1, std::memory_order_relaxed); }

  // Set once this worker has logged that it ran out of descriptors (warn once per cause).
  bool warned_descriptors = false;

  // Runs the io_context on a new thread until stop().
  void start();
  void stop();
  void join();

 private:
  void schedule_sweep();
  void sweep();
  void schedule_check(SessionEntry& entry);
  void arm_connect_timer(std::chrono::steady_clock::time_point when);
  void expire_connects();

  unsigned index_;
  std::chrono::milliseconds tick_interval_;
  // Declared before the io_context: operations the io_context destroys unrun may still hold
  // a buffer lease.
  BufferPool buffers_;
  PipePool pipes_;
  boost::asio::io_context context_;
  Poller poller_{context_};  // after the io_context, whose reactor it uses
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> guard_;
  using SessionList = boost::intrusive::list<SessionEntry, boost::intrusive::constant_time_size<false>>;
  // Sessions with an idle timeout, in a timing wheel: slot (t % wheel_.size()) holds those to check
  // at tick t, when their idle time could first be up. A sweep looks at one slot, so an idle
  // connection is looked at about once per idle timeout, not once per tick: its memory stays
  // untouched (measured in BENCHMARKS.md). Sessions without an idle timeout are in `untimed_`.
  std::vector<SessionList> wheel_;
  SessionList untimed_;
  boost::asio::steady_timer sweep_timer_;
  // Connects in progress, earliest deadline first.
  boost::intrusive::list<PendingConnect, boost::intrusive::constant_time_size<false>> connects_;
  boost::asio::steady_timer connect_timer_;
  std::optional<std::chrono::steady_clock::time_point> connect_timer_expiry_;  // when armed
  std::uint64_t tick_ = 0;
  std::atomic<std::size_t> active_{0};
  std::thread thread_;
};

}  // namespace pb::net
