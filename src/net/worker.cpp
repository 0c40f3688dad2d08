#include "protobalance/net/worker.hpp"

#include <algorithm>

#include <spdlog/spdlog.h>

#include "protobalance/net/relay.hpp"

namespace pb::net {

void SessionEntry::close() {
  if (relay != nullptr) {
    Relay::abort(*relay);
  } else if (connect != nullptr) {
    connect->cancel();  // completes with operation_aborted: the session gives up
  } else {
    if (client != nullptr) client->close();
    if (node != nullptr) node->close();
  }
}

Worker::Worker(unsigned index, std::chrono::milliseconds tick, std::size_t wheel_slots)
    : index_(index),
      tick_interval_(tick),
      context_(1),
      wheel_(std::max<std::size_t>(wheel_slots, 1)),
      sweep_timer_(context_),
      connect_timer_(context_) {
  guard_.emplace(context_.get_executor());
}

Worker::~Worker() {
  stop();
  join();
  // Relays waiting only on the poller have no operation in Asio's queues, so the io_context
  // will not destroy them: do it here, while everything they refer to still exists. (A relay
  // with an operation queued is destroyed with it, as before.)
  std::vector<Relay*> waiting;
  auto collect = [&](SessionList& list) {
    for (auto& entry : list) {
      if (entry.relay != nullptr) waiting.push_back(entry.relay);
    }
  };
  collect(untimed_);
  for (auto& slot : wheel_) collect(slot);
  for (Relay* relay : waiting) Relay::abandon_if_idle(*relay);
  while (!connects_.empty()) {
    PendingConnect& pending = connects_.front();
    connects_.pop_front();
    pending.abandon();
  }
}

std::uint64_t Worker::ticks_for(std::chrono::milliseconds timeout) const {
  if (timeout.count() <= 0) return 0;
  // Round up: a session is closed after at least `timeout` of silence, never before.
  return static_cast<std::uint64_t>((timeout.count() + tick_interval_.count() - 1) /
                                    tick_interval_.count());
}

void Worker::track(SessionEntry& entry) {
  entry.last_tick = tick_;
  if (entry.idle_ticks == 0) {
    untimed_.push_back(entry);
  } else {
    schedule_check(entry);
  }
}

void Worker::schedule_check(SessionEntry& entry) {
  // The first tick at which `tick_ - last_tick > idle_ticks` can hold.
  const std::uint64_t due = entry.last_tick + entry.idle_ticks + 1;
  wheel_[due % wheel_.size()].push_back(entry);
}

std::size_t Worker::close_sessions(const std::function<bool(const SessionEntry&)>& match) {
  std::size_t closed = 0;
  auto close_matching = [&](SessionList& list) {
    for (auto& entry : list) {
      if (match(entry)) {
        entry.killed = true;
        entry.close();
        ++closed;
      }
    }
  };
  close_matching(untimed_);
  for (auto& slot : wheel_) close_matching(slot);
  return closed;
}

void Worker::watch_connect(PendingConnect& pending, std::chrono::milliseconds timeout) {
  pending.deadline = std::chrono::steady_clock::now() + timeout;
  // Deadlines mostly come in order (each cluster has one connect_timeout): look from the back.
  auto it = connects_.end();
  while (it != connects_.begin() && std::prev(it)->deadline > pending.deadline) --it;
  connects_.insert(it, pending);
  if (!connect_timer_expiry_ || pending.deadline < *connect_timer_expiry_) {
    arm_connect_timer(pending.deadline);
  }
}

void Worker::arm_connect_timer(std::chrono::steady_clock::time_point when) {
  connect_timer_expiry_ = when;
  connect_timer_.expires_at(when);  // a wait already pending completes as cancelled
  connect_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;  // re-armed (a newer wait is pending) or stopping
    expire_connects();
  });
}

void Worker::expire_connects() {
  connect_timer_expiry_.reset();
  const auto now = std::chrono::steady_clock::now();
  while (!connects_.empty() && connects_.front().deadline <= now) {
    PendingConnect& pending = connects_.front();
    connects_.pop_front();
    pending.expire();
  }
  if (!connects_.empty()) arm_connect_timer(connects_.front().deadline);
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

// Closes sessions that moved no byte for their idle timeout. One timer per worker instead of one
// per session, and one wheel slot per tick instead of every session: a session whose time is
// not up (it moved bytes since it was filed) is filed again for when it could be.
void Worker::sweep() {
  ++tick_;
  SessionList due;
  due.splice(due.end(), wheel_[tick_ % wheel_.size()]);
  while (!due.empty()) {
    SessionEntry& entry = due.front();
    due.pop_front();
    if (entry.idle_expired) continue;
    if (tick_ - entry.last_tick > entry.idle_ticks) {
      entry.idle_expired = true;  // out of the wheel; its frame goes when the session ends
      entry.close();
      continue;
    }
    schedule_check(entry);
  }
}

}  // namespace pb::net
