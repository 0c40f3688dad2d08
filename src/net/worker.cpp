#include "protobalance/net/worker.hpp"

// The worker's event loop. Each round: one epoll_wait on the worker's Poller (blocking until an
// event, a wake-up or the next timer; not at all when work is waiting), the events it returned,
// the work posted to the worker, the queued turns, the timers that are due, then the freeing of
// the connections closed meanwhile.
//
// Why a loop of our own rather than Asio's: the data-path sockets live in the worker's own
// edge-triggered epoll set (poller.hpp). Nested in an io_context, every wake-up cost two
// epoll_waits (Asio's blocking one on its reactor, then the set's), and the nesting needed
// Asio's detail reactor API. Here the set is the only one the thread blocks in:
//   * Wake-ups from other threads: an eventfd in the set. post() from another thread queues the
//     work under a mutex, raises a flag and writes the eventfd; after each wait the loop looks
//     at the flag and takes the queue whole, before it delivers the wait's events (work posted
//     before a client connected -- a reload's route, a block -- applies to that client, as
//     with Asio's queue). The write comes after the queueing, so work queued after the loop
//     took the queue raises a new edge: no wake-up is lost, and none is needed for work posted
//     on the worker itself.
//   * Timers: the wait's timeout (milliseconds, rounded up so that nothing runs early) ends at
//     the next idle sweep or the earliest Deadline. A timerfd would be one more descriptor and
//     one timerfd_settime per re-arm; a timeout costs nothing, and connect, phase and idle
//     timeouts do not need finer than a millisecond.
//   * No Asio object lives on a worker (no io_context, timer or socket; the prober, health
//     checks and agent queries run on the node monitor's own thread, see node_monitor.cpp),
//     so nothing else needs the thread to block anywhere else.

#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>

#include <boost/system/system_error.hpp>
#include <spdlog/spdlog.h>

#include "protobalance/net/connection.hpp"

namespace pb::net {

namespace {

using Clock = std::chrono::steady_clock;

thread_local const Worker* current_worker = nullptr;

// Milliseconds from `now` until `when`, rounded up (0 if it has passed).
int milliseconds_until(Clock::time_point when, Clock::time_point now) {
  if (when <= now) return 0;
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(when - now).count();
  return static_cast<int>(std::min<std::int64_t>(left, INT_MAX));
}

}  // namespace

Worker::Worker(unsigned index, std::chrono::milliseconds tick, std::size_t wheel_slots)
    : index_(index), tick_interval_(tick), wheel_(std::max<std::size_t>(wheel_slots, 1)) {
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (wake_fd_ < 0) {
    throw boost::system::system_error(errno, boost::system::system_category(), "eventfd");
  }
  if (!poller_.add(wake_fd_, wake_slot_)) {
    const int error = errno;
    ::close(wake_fd_);
    throw boost::system::system_error(error, boost::system::system_category(),
                                      "watching the worker's eventfd");
  }
}

Worker::~Worker() {
  stop();
  join();
  // Work never run may hold the last reference to objects of this worker (a listener): they go
  // first, while the lists they may be linked into still exist.
  remote_.clear();
  ran_.clear();
  local_.clear();
  // Connections wait only on the poller and the worker's lists, never in a queue of work: free
  // them here, while everything they refer to still exists.
  auto free_all = [](ConnectionList& list) {
    while (!list.empty()) {
      Connection& c = list.front();
      list.pop_front();
      delete &c;
    }
  };
  free_all(untimed_);
  for (auto& slot : wheel_) free_all(slot);
  free_all(retired_);
  // What is left armed belongs to others: let them free themselves.
  while (!deadlines_.empty()) {
    Deadline& deadline = deadlines_.front();
    deadlines_.pop_front();
    deadline.expire(deadline.owner, true);
  }
  ::close(wake_fd_);
}

void Worker::post(std::function<void()> work) {
  if (running_in_this_thread()) {
    local_.push_back(std::move(work));
    return;
  }
  {
    std::lock_guard lock(remote_mutex_);
    remote_.push_back(std::move(work));
  }
  remote_pending_.store(true, std::memory_order_release);
  const std::uint64_t one = 1;
  // Fails only when the counter would overflow (2^64 - 2 unread wake-ups): the loop is awake.
  [[maybe_unused]] const auto written = ::write(wake_fd_, &one, sizeof one);
}

bool Worker::running_in_this_thread() const {
  return current_worker == this;
}

void Worker::run_posted() {
  remote_pending_.store(false, std::memory_order_relaxed);
  std::uint64_t count = 0;
  [[maybe_unused]] const auto read = ::read(wake_fd_, &count, sizeof count);  // re-arms the edge
  const std::size_t first = ran_.size();
  {
    std::lock_guard lock(remote_mutex_);
    for (auto& work : remote_) ran_.push_back(std::move(work));
    remote_.clear();
  }
  for (std::size_t i = first; i < ran_.size(); ++i) ran_[i]();
}

void Worker::loop() {
  current_worker = this;
  auto now = Clock::now();
  next_sweep_ = now + tick_interval_;
  run_posted();       // what was posted before the start
  bool more = false;  // the last wait filled its batch: more events may be ready at once
  while (!stopping_.load(std::memory_order_acquire)) {
    more = poller_.wait(more ? 0 : wait_timeout(now)) == Poller::kBatch;
    if (stopping_.load(std::memory_order_acquire)) break;
    if (remote_pending_.load(std::memory_order_acquire)) run_posted();
    poller_.deliver();
    if (!local_.empty()) {
      // Work posted meanwhile waits for the next round.
      std::vector<std::function<void()>> batch;
      batch.swap(local_);
      for (auto& work : batch) work();
    }
    run_turns();
    now = Clock::now();
    run_timers(now);
    free_retired();
    ran_.clear();
  }
  current_worker = nullptr;
}

int Worker::wait_timeout(Clock::time_point now) const {
  if (!turns_.empty() || !local_.empty()) return 0;
  Clock::time_point next = next_sweep_;
  if (!deadlines_.empty()) next = std::min(next, deadlines_.front().at);
  return milliseconds_until(next, now);
}

void Worker::run_timers(Clock::time_point now) {
  if (now >= next_sweep_) {
    sweep();
    next_sweep_ = now + tick_interval_;
  }
  while (!deadlines_.empty() && deadlines_.front().at <= now) {
    Deadline& deadline = deadlines_.front();
    deadlines_.pop_front();
    deadline.expire(deadline.owner, false);
  }
}

std::uint64_t Worker::ticks_for(std::chrono::milliseconds timeout) const {
  if (timeout.count() <= 0) return 0;
  // Round up: a connection is closed after at least `timeout` of silence, never before.
  return static_cast<std::uint64_t>((timeout.count() + tick_interval_.count() - 1) /
                                    tick_interval_.count());
}

Connection& Worker::adopt(std::unique_ptr<Connection> connection) {
  Connection& c = *connection.release();
  c.last_tick = tick_;
  if (c.idle_ticks == 0) {
    untimed_.push_back(c);
  } else {
    schedule_check(c);
  }
  return c;
}

void Worker::retire(Connection& connection) {
  connection.ConnectionHook::unlink();
  retired_.push_back(connection);
}

void Worker::free_retired() {
  while (!retired_.empty()) {
    Connection& c = retired_.front();
    retired_.pop_front();
    delete &c;
  }
}

void Worker::schedule_check(Connection& connection) {
  // The first tick at which `tick_ - last_tick > idle_ticks` can hold.
  const std::uint64_t due = connection.last_tick + connection.idle_ticks + 1;
  wheel_[due % wheel_.size()].push_back(connection);
}

std::size_t Worker::close_connections(const std::function<bool(const Connection&)>& match) {
  std::size_t closed = 0;
  auto close_matching = [&](ConnectionList& list) {
    for (auto it = list.begin(); it != list.end();) {
      Connection& c = *it++;  // closing moves it to `retired_`
      if (!c.closed() && match(c)) {
        c.close(CloseCause::operator_);
        ++closed;
      }
    }
  };
  close_matching(untimed_);
  for (auto& slot : wheel_) close_matching(slot);
  return closed;
}

void Worker::arm(Deadline& deadline, std::chrono::milliseconds timeout) {
  deadline.unlink();
  deadline.at = Clock::now() + timeout;
  // Deadlines mostly come in order (each cluster has one connect_timeout): look from the back.
  auto it = deadlines_.end();
  while (it != deadlines_.begin() && std::prev(it)->at > deadline.at) --it;
  deadlines_.insert(it, deadline);
}

void Worker::defer(Turn& turn) {
  if (turn.is_linked()) return;
  turns_.push_back(turn);
}

// Runs the turns queued so far; those queued meanwhile wait for the next round, after the
// worker's other work.
void Worker::run_turns() {
  if (turns_.empty()) return;
  decltype(turns_) now;
  now.splice(now.end(), turns_);
  while (!now.empty()) {
    Turn& turn = now.front();
    now.pop_front();
    turn.run(turn.owner);
  }
}

void Worker::start() {
  thread_ = std::thread([this] {
    try {
      loop();
    } catch (const std::exception& e) {
      spdlog::critical("worker {} stopped by an unexpected error: {}", index_, e.what());
      std::terminate();
    }
  });
}

void Worker::stop() {
  stopping_.store(true, std::memory_order_release);
  const std::uint64_t one = 1;
  [[maybe_unused]] const auto written = ::write(wake_fd_, &one, sizeof one);
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

// Closes connections that moved no byte for their idle timeout. One sweep per worker and tick
// instead of a timer per connection, and one wheel slot per tick instead of every connection: a
// connection whose time is not up (it moved bytes since it was filed) is filed again for when it
// could be.
void Worker::sweep() {
  ++tick_;
  ConnectionList due;
  due.splice(due.end(), wheel_[tick_ % wheel_.size()]);
  while (!due.empty()) {
    Connection& c = due.front();
    due.pop_front();
    if (tick_ - c.last_tick > c.idle_ticks) {
      c.close(CloseCause::idle);  // moves it to `retired_`
      continue;
    }
    schedule_check(c);
  }
}

}  // namespace pb::net
