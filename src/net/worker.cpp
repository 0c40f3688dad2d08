#include "protobalance/net/worker.hpp"

#include <algorithm>

#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include "protobalance/net/connection.hpp"

namespace pb::net {

Worker::Worker(unsigned index, std::chrono::milliseconds tick, std::size_t wheel_slots)
    : index_(index),
      tick_interval_(tick),
      context_(1),
      wheel_(std::max<std::size_t>(wheel_slots, 1)),
      sweep_timer_(context_),
      deadline_timer_(context_) {
  guard_.emplace(context_.get_executor());
}

Worker::~Worker() {
  stop();
  join();
  // Connections wait only on the poller and the worker's lists, never in Asio's queues: free
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
  // What is left armed belongs to others (a probe's connect): let them free themselves.
  while (!deadlines_.empty()) {
    Deadline& deadline = deadlines_.front();
    deadlines_.pop_front();
    deadline.expire(deadline.owner, true);
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
  if (freeing_posted_) return;
  freeing_posted_ = true;
  boost::asio::post(context_, [this] { free_retired(); });
}

void Worker::free_retired() {
  freeing_posted_ = false;
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
  deadline.at = std::chrono::steady_clock::now() + timeout;
  // Deadlines mostly come in order (each cluster has one connect_timeout): look from the back.
  auto it = deadlines_.end();
  while (it != deadlines_.begin() && std::prev(it)->at > deadline.at) --it;
  deadlines_.insert(it, deadline);
  if (!deadline_timer_expiry_ || deadline.at < *deadline_timer_expiry_) arm_timer(deadline.at);
}

void Worker::arm_timer(std::chrono::steady_clock::time_point when) {
  deadline_timer_expiry_ = when;
  deadline_timer_.expires_at(when);  // a wait already pending completes as cancelled
  deadline_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;  // re-armed (a newer wait is pending) or stopping
    expire_deadlines();
  });
}

void Worker::expire_deadlines() {
  deadline_timer_expiry_.reset();
  const auto now = std::chrono::steady_clock::now();
  while (!deadlines_.empty() && deadlines_.front().at <= now) {
    Deadline& deadline = deadlines_.front();
    deadlines_.pop_front();
    deadline.expire(deadline.owner, false);
  }
  if (!deadlines_.empty()) arm_timer(deadlines_.front().at);
}

void Worker::defer(Turn& turn) {
  if (turn.is_linked()) return;
  turns_.push_back(turn);
  if (turns_posted_) return;
  turns_posted_ = true;
  boost::asio::post(context_, [this] { run_turns(); });
}

// Runs the turns queued so far; those queued meanwhile wait for the next round, after the
// worker's other work.
void Worker::run_turns() {
  turns_posted_ = false;
  decltype(turns_) now;
  now.splice(now.end(), turns_);
  while (!now.empty()) {
    Turn& turn = now.front();
    now.pop_front();
    turn.run(turn.owner);
  }
}

void Worker::start() {
  schedule_sweep();
  poller_.start();
  thread_ = std::thread([this] {
    try {
      context_.run();
    } catch (const std::exception& e) {
      spdlog::critical("worker {} stopped by an unexpected error: {}", index_, e.what());
      std::terminate();
    }
  });
}

void Worker::stop() {
  guard_.reset();
  context_.stop();
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::schedule_sweep() {
  sweep_timer_.expires_after(tick_interval_);
  sweep_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    sweep();
    schedule_sweep();
  });
}

// Closes connections that moved no byte for their idle timeout. One timer per worker instead of
// one per connection, and one wheel slot per tick instead of every connection: a connection
// whose time is not up (it moved bytes since it was filed) is filed again for when it could be.
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
