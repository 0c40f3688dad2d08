#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include <boost/intrusive/list.hpp>

#include "protobalance/net/buffer_pool.hpp"
#include "protobalance/net/io.hpp"
#include "protobalance/net/pipe_pool.hpp"
#include "protobalance/net/poller.hpp"

namespace pb::net {

class Connection;

namespace hooks {
struct Idle;
struct Deadline;
struct Turn;
template <typename Tag>
using Hook = boost::intrusive::list_base_hook<boost::intrusive::tag<Tag>,
                                              boost::intrusive::link_mode<boost::intrusive::auto_unlink>>;
}  // namespace hooks

// Links an object into its worker's lists of connections (the idle wheel, the untimed list, the
// list of connections to free); unlinks itself when destroyed.
using ConnectionHook = hooks::Hook<hooks::Idle>;

// A point in time at which something gives up (a phase's deadline, a connect's timeout), kept
// by the worker's loop (Worker::arm). `expire(owner, false)` runs on the worker's thread when
// it passes (the deadline is unlinked first); `expire(owner, true)` when the worker is
// destroyed with the deadline still armed (free without completing). Unlinks itself when
// destroyed or disarmed.
struct Deadline : hooks::Hook<hooks::Deadline> {
  using Expire = void (*)(void* owner, bool abandoned);
  Deadline(Expire function, void* argument) : expire(function), owner(argument) {}
  std::chrono::steady_clock::time_point at;
  Expire expire;
  void* owner;
  bool armed() const { return is_linked(); }
  void disarm() { unlink(); }
};

// A turn on the worker's thread after its other pending work (a relay direction that yielded
// after a burst, a listener with connections left after a batch): the loop runs the turns
// queued before its current round, after that round's events.
struct Turn : hooks::Hook<hooks::Turn> {
  using Run = void (*)(void* owner);
  Turn(Run function, void* argument) : run(function), owner(argument) {}
  Run run;
  void* owner;
};

// One worker thread running its own event loop (worker.cpp): one epoll_wait per wake-up, on
// the worker's Poller, which holds the data-path sockets and an eventfd for wake-ups from other
// threads; the wait's timeout serves the worker's timers (the idle sweep and the deadlines).
// Every connection accepted on it stays on it, so per-connection state needs no locks. The
// worker owns its connections (Connection): it frees them after they have closed, and any that
// are left when it is destroyed. There is no io_context on a worker: nothing on its thread uses
// Asio's reactor, and the one way in from another thread is post().
class Worker {
 public:
  // `wheel_slots`: size of the idle-timeout wheel (see wheel_); tests make it small.
  Worker(unsigned index, std::chrono::milliseconds tick, std::size_t wheel_slots = 1024);
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  unsigned index() const { return index_; }
  BufferPool& buffers() { return buffers_; }
  PipePool& pipes() { return pipes_; }
  Poller& poller() { return poller_; }

  // Runs `work` on the worker's thread, after the current round of its loop; safe from any
  // thread, also before start() (it runs once the loop starts). From another thread it wakes
  // the loop (an eventfd write), and it runs before the events that loop's wait returns: what
  // was posted before a client connected (a reload's new route) applies to that client. Work
  // still queued when the worker stops is dropped unrun.
  void post(std::function<void()> work);
  // True on the worker's own thread (inside its loop).
  bool running_in_this_thread() const;

  // The coarse clock connections stamp their activity with; advanced by the idle sweeper.
  std::uint64_t tick() const { return tick_; }
  std::chrono::milliseconds tick_interval() const { return tick_interval_; }
  // Ticks of idle time that make `timeout` (0 for no timeout).
  std::uint64_t ticks_for(std::chrono::milliseconds timeout) const;

  // Takes ownership of a new connection and files it for idle checks; the connection then
  // starts itself (Connection::start).
  Connection& adopt(std::unique_ptr<Connection> connection);
  // A closed connection: freed at the end of the loop's round, never within the current call
  // (the poller's batch or a loop over the worker's lists may still name it).
  void retire(Connection& connection);
  // Arms `deadline` for `timeout` from now (re-arms it if armed). The loop's wait ends at the
  // earliest deadline (or the next sweep): no timer object, no system call to arm one.
  void arm(Deadline& deadline, std::chrono::milliseconds timeout);
  // Queues `turn` (no-op if queued already).
  void defer(Turn& turn);
  // Closes, on this worker's thread, every open connection for which `match` is true (as
  // closed by an operator: node offline, end of a graceful stop); returns how many.
  std::size_t close_connections(const std::function<bool(const Connection&)>& match);
  // Connections open on this worker; safe to read from any thread.
  std::size_t active_connections() const { return active_.load(std::memory_order_relaxed); }
  void connection_started() { active_.fetch_add(1, std::memory_order_relaxed); }
  void connection_ended() { active_.fetch_sub(1, std::memory_order_relaxed); }

  // Set once this worker has logged that it ran out of descriptors (warn once per cause).
  bool warned_descriptors = false;

  // Runs the loop on a new thread until stop().
  void start();
  // Ends the loop after its current round; safe from any thread.
  void stop();
  void join();

 private:
  using ConnectionList =
      boost::intrusive::list<Connection, boost::intrusive::base_hook<ConnectionHook>,
                             boost::intrusive::constant_time_size<false>>;
  void loop();
  // How long the loop may block: until the next sweep or deadline, 0 if work is waiting.
  int wait_timeout(std::chrono::steady_clock::time_point now) const;
  void run_timers(std::chrono::steady_clock::time_point now);
  void run_posted();
  void sweep();
  void schedule_check(Connection& connection);
  void run_turns();
  void free_retired();

  unsigned index_;
  std::chrono::milliseconds tick_interval_;
  BufferPool buffers_;
  PipePool pipes_;
  Poller poller_;
  // Cross-thread wake-ups: post() from another thread queues in `remote_`, sets
  // `remote_pending_` and writes the eventfd, which is in the poller's set (its slot has no
  // target: the flag says it all); the loop then takes the queue whole. The work it ran is
  // destroyed at the end of the round, after the batch (it may hold the last reference to a
  // slot's owner, a listener).
  int wake_fd_ = -1;
  PollSlot wake_slot_;
  std::atomic<bool> remote_pending_{false};
  std::mutex remote_mutex_;
  std::vector<std::function<void()>> remote_;  // guarded by remote_mutex_
  std::vector<std::function<void()>> ran_;     // run this round, destroyed at its end
  std::vector<std::function<void()>> local_;   // posted on the worker's thread
  std::atomic<bool> stopping_{false};
  // Open connections with an idle timeout, in a timing wheel: slot (t % wheel_.size()) holds
  // those to check at tick t, when their idle time could first be up. A sweep looks at one
  // slot, so an idle connection is looked at about once per idle timeout, not once per tick:
  // its memory stays untouched (measured in BENCHMARKS.md). Connections without an idle
  // timeout are in `untimed_`; closed ones wait in `retired_` to be freed.
  std::vector<ConnectionList> wheel_;
  ConnectionList untimed_;
  ConnectionList retired_;
  std::chrono::steady_clock::time_point next_sweep_;
  // Armed deadlines, earliest first.
  boost::intrusive::list<Deadline, boost::intrusive::base_hook<hooks::Hook<hooks::Deadline>>,
                         boost::intrusive::constant_time_size<false>>
      deadlines_;
  boost::intrusive::list<Turn, boost::intrusive::base_hook<hooks::Hook<hooks::Turn>>,
                         boost::intrusive::constant_time_size<false>>
      turns_;
  std::uint64_t tick_ = 0;
  std::atomic<std::size_t> active_{0};
  std::thread thread_;
};

}  // namespace pb::net
