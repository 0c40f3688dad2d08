#include "protobalance/net/worker.hpp"

#include <spdlog/spdlog.h>

namespace pb::net {

void SessionEntry::close() {
  boost::system::error_code ignored;
  if (client != nullptr) client->close(ignored);
  if (node != nullptr) node->close(ignored);
}

Worker::Worker(unsigned index, std::chrono::milliseconds tick)
    : index_(index), tick_interval_(tick), context_(1), sweep_timer_(context_) {
  guard_.emplace(context_.get_executor());
}

Worker::~Worker() {
  stop();
  join();
}

std::uint64_t Worker::ticks_for(std::chrono::milliseconds timeout) const {
  if (timeout.count() <= 0) return 0;
  // Round up: a session is closed after at least `timeout` of silence, never before.
  return static_cast<std::uint64_t>((timeout.count() + tick_interval_.count() - 1) /
                                    tick_interval_.count());
}

void Worker::track(SessionEntry& entry) {
  entry.last_tick = tick_;
  sessions_.push_back(entry);
}

std::size_t Worker::close_sessions(const std::function<bool(const SessionEntry&)>& match) {
  std::size_t closed = 0;
  for (auto& entry : sessions_) {
    if (match(entry)) {
      entry.killed = true;
      entry.close();
      ++closed;
    }
  }
  return closed;
}

void Worker::start() {
  schedule_sweep();
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
// per session keeps an idle connection's cost to its coroutine frames.
void Worker::sweep() {
  ++tick_;
  for (auto& entry : sessions_) {
    if (entry.idle_ticks != 0 && !entry.idle_expired && tick_ - entry.last_tick > entry.idle_ticks) {
      entry.idle_expired = true;
      entry.close();
    }
  }
}

}  // namespace pb::net
