#include "protobalance/state/twin_link.hpp"

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>

#include "twin_link_state.hpp"
#include "twin_text.hpp"

namespace pb::state {
namespace twin_redis {

namespace {

// The argument arrays of hiredis's *Argv calls, pointing into `args` (which must outlive them).
struct Argv {
  explicit Argv(const Args& args) {
    pointers.reserve(args.size());
    lengths.reserve(args.size());
    for (const std::string& a : args) {
      pointers.push_back(a.data());
      lengths.push_back(a.size());
    }
  }
  int count() const { return static_cast<int>(pointers.size()); }
  std::vector<const char*> pointers;
  std::vector<std::size_t> lengths;
};

}  // namespace

Reply command(redisContext* c, const Args& args) {
  Argv argv(args);
  return Reply(static_cast<redisReply*>(
      redisCommandArgv(c, argv.count(), argv.pointers.data(), argv.lengths.data())));
}

std::string reply_text(const redisReply* r) {
  return r != nullptr && r->str != nullptr ? std::string(r->str, r->len) : std::string{};
}

void append(redisContext* c, const Args& args) {
  Argv argv(args);
  redisAppendCommandArgv(c, argv.count(), argv.pointers.data(), argv.lengths.data());
}

Reply next_reply(redisContext* c) {
  if (c->err != 0) {
    return nullptr;
  }
  void* raw = nullptr;
  if (redisGetReply(c, &raw) != REDIS_OK) {
    return nullptr;
  }
  return Reply(static_cast<redisReply*>(raw));
}

}  // namespace twin_redis

using twin_redis::Args;
using twin_redis::Clock;
using twin_redis::command;
using twin_redis::Context;
using twin_redis::Job;
using twin_redis::kCommandTimeout;
using twin_redis::kConnectTimeout;
using twin_redis::kInstanceMemory;
using twin_redis::Reply;
using twin_redis::reply_text;

namespace {

using twin_text::kFormatVersion;
using twin_text::split;
using twin_text::to_unix;

timeval to_timeval(std::chrono::milliseconds d) {
  return timeval{static_cast<time_t>(d.count() / 1000),
                 static_cast<suseconds_t>((d.count() % 1000) * 1000)};
}

}  // namespace

// Connects, authenticates, selects the database and checks with PING that it is a Redis.
// Returns nullptr with `error` set on failure.
Context TwinLink::State::open(std::string& error) {
  const timeval tv = to_timeval(kConnectTimeout);
  Context c(config.unix_socket.empty()
                ? redisConnectWithTimeout(config.host.c_str(), config.port, tv)
                : redisConnectUnixWithTimeout(config.unix_socket.c_str(), tv));
  if (!c || c->err != 0) {
    error = fmt::format("cannot connect to Redis at {}: {}", config.redis,
                        c ? c->errstr : "out of memory");
    return nullptr;
  }
  redisSetTimeout(c.get(), to_timeval(kCommandTimeout));
  if (!config.password_file.empty()) {
    std::string why;
    const std::optional<std::string> password =
        config::read_password_file(config.password_file, why);
    if (!password) {
      error = fmt::format("Redis at {}: password_file: {}", config.redis, why);
      return nullptr;
    }
    Reply r = command(c.get(), {"AUTH", *password});
    if (!r || r->type == REDIS_REPLY_ERROR) {
      error = fmt::format("Redis at {} refused the password (AUTH): {}", config.redis,
                          r ? reply_text(r.get()) : std::string(c->errstr));
      return nullptr;
    }
  }
  Reply ping = command(c.get(), {"PING"});
  if (!ping) {
    // Also what a frozen Redis looks like: the kernel accepts, nobody answers.
    error = fmt::format("no answer to PING from {} (not Redis, or not responding): {}",
                        config.redis, c->errstr);
    return nullptr;
  }
  if (!(ping->type == REDIS_REPLY_STATUS && reply_text(ping.get()) == "PONG")) {
    error = fmt::format("the server at {} does not answer PING as Redis does: {}", config.redis,
                        reply_text(ping.get()));
    return nullptr;
  }
  if (config.database != 0) {
    Reply r = command(c.get(), {"SELECT", std::to_string(config.database)});
    if (!r || r->type == REDIS_REPLY_ERROR) {
      error = fmt::format("Redis at {} refused database {} (SELECT): {}", config.redis,
                          config.database, r ? reply_text(r.get()) : std::string(c->errstr));
      return nullptr;
    }
  }
  return c;
}

void TwinLink::State::set_error(const std::string& error) {
  bool log = false;
  {
    std::lock_guard lock(mutex);
    log = stats.last_error != error;
    stats.last_error = error;
  }
  if (log) {
    spdlog::warn("twin: {}; working alone, retrying", error);
  }
}

void TwinLink::State::set_connected(bool up) {
  const bool was = connected.exchange(up);
  if (was == up) {
    return;
  }
  std::lock_guard lock(mutex);
  stats.connected = up;
  stats.since = std::chrono::system_clock::now();
  if (up) {
    stats.last_error.clear();
  }
}

void TwinLink::State::set_subscribed(bool up) {
  std::lock_guard lock(mutex);
  stats.subscribed = up;
}

// Waits for `d` or until stopping; returns false when stopping.
bool TwinLink::State::pause(std::chrono::milliseconds d) {
  std::unique_lock lock(mutex);
  return !wake.wait_for(lock, d, [&] { return stopping; });
}

// Removes and returns the callback of lookup `id` if it is still pending.
TwinLink::LookupCallback TwinLink::State::take(std::uint64_t id) {
  std::lock_guard lock(mutex);
  auto it = pending.find(id);
  if (it == pending.end()) {
    return nullptr;
  }
  LookupCallback done = std::move(it->second.done);
  pending.erase(it);
  return done;
}

void TwinLink::State::answer(const LookupCallback& done, LookupResult result) {
  {
    std::lock_guard lock(mutex);
    switch (result.status) {
      case LookupResult::Status::hit:
        ++stats.lookups_hit;
        break;
      case LookupResult::Status::miss:
        ++stats.lookups_miss;
        break;
      default:
        ++stats.lookups_timeout;
    }
  }
  done(result);
}

void TwinLink::State::fail_pending() {
  std::map<std::uint64_t, Pending> failed;
  {
    std::lock_guard lock(mutex);
    failed.swap(pending);
  }
  for (auto& [id, p] : failed) {
    answer(p.done, {LookupResult::Status::unavailable, {}});
  }
}

void TwinLink::State::run_deadlines() {
  std::unique_lock lock(mutex);
  while (!stopping) {
    auto next = Clock::time_point::max();
    for (const auto& [id, p] : pending) {
      next = std::min(next, p.deadline);
    }
    deadline_sleep = next;
    if (next == Clock::time_point::max()) {
      deadline_changed.wait(lock);
    } else {
      deadline_changed.wait_until(lock, next);
    }
    std::vector<LookupCallback> expired;
    const auto now = Clock::now();
    for (auto it = pending.begin(); it != pending.end();) {
      if (it->second.deadline <= now) {
        expired.push_back(std::move(it->second.done));
        it = pending.erase(it);
      } else {
        ++it;
      }
    }
    lock.unlock();
    for (const LookupCallback& done : expired) {
      answer(done, {LookupResult::Status::timeout, {}});
    }
    lock.lock();
  }
}

TwinLink::TwinLink(config::TwinConfig config, TwinCallbacks callbacks)
    : state_(std::make_shared<State>()) {
  State& s = *state_;
  s.config = std::move(config);
  s.callbacks = std::move(callbacks);
  s.channel = s.config.key_prefix + "events";
  s.own_prefix = fmt::format("{} {} ", kFormatVersion, s.config.instance);
  if (::pipe(s.wake_pipe) != 0) {
    s.wake_pipe[0] = s.wake_pipe[1] = -1;
  }
  s.command_thread = std::thread([&s] { s.run_commands(); });
  s.subscriber_thread = std::thread([&s] { s.run_subscriber(); });
  s.deadline_thread = std::thread([&s] { s.run_deadlines(); });
}

TwinLink::~TwinLink() {
  State& s = *state_;
  {
    std::lock_guard lock(s.mutex);
    s.stopping = true;
  }
  s.wake.notify_all();
  s.deadline_changed.notify_all();
  if (s.wake_pipe[1] >= 0) {
    const char byte = 0;
    [[maybe_unused]] const auto ignored = ::write(s.wake_pipe[1], &byte, 1);
  }
  s.command_thread.join();
  s.subscriber_thread.join();
  s.deadline_thread.join();
  s.fail_pending();
  for (const int fd : s.wake_pipe) {
    if (fd >= 0) {
      ::close(fd);
    }
  }
}

void TwinLink::publish_affinity(const AffinityEntry& entry) {
  state_->enqueue(state_->affinity_job(entry, false));
}

void TwinLink::publish_pin(const AffinityEntry& entry) {
  state_->enqueue(state_->affinity_job(entry, true));
}

void TwinLink::publish_forget(const std::string& cluster, const std::string& key) {
  State& s = *state_;
  TwinMessage m;
  m.kind = TwinMessage::Kind::forget;
  m.affinity.cluster = cluster;
  m.affinity.key = key;
  s.enqueue(s.write_and_publish(
      [k = s.own_record(m).first]() -> std::vector<Args> {
        return {{"DEL", k}};
      },
      m));
}

void TwinLink::publish_node_state(const std::string& cluster, const std::string& node,
                                  const std::string& state) {
  State& s = *state_;
  TwinMessage m;
  m.kind = TwinMessage::Kind::node_state;
  m.cluster = cluster;
  m.node = node;
  m.state = state;
  s.enqueue(s.write_and_publish(
      [record = s.own_record(m)]() -> std::vector<Args> {
        return {{"SET", record.first, record.second}};
      },
      m));
}

void TwinLink::publish_route(const std::string& name, const std::string& target) {
  State& s = *state_;
  TwinMessage m;
  m.kind = TwinMessage::Kind::route;
  m.name = name;
  m.target = target;
  auto [key, value] = s.own_record(m);
  Args write =
      target.empty() ? Args{"DEL", std::move(key)} : Args{"SET", std::move(key), std::move(value)};
  s.enqueue(s.write_and_publish(
      [write = std::move(write)]() -> std::vector<Args> { return {write}; }, m));
}

void TwinLink::publish_block(const std::string& subject, SystemTime until) {
  State& s = *state_;
  TwinMessage m;
  m.kind = TwinMessage::Kind::block;
  m.name = subject;
  m.until = until;
  s.enqueue(s.write_and_publish(
      [record = s.own_record(m), until]() -> std::vector<Args> {
        Args args{"SET", record.first, record.second};
        if (until != SystemTime{}) {
          const auto left = to_unix(until) - to_unix(std::chrono::system_clock::now());
          if (left <= 0) {
            return {};
          }
          args.insert(args.end(), {"EX", std::to_string(left)});
        }
        return {args};
      },
      m));
}

void TwinLink::publish_unblock(const std::string& subject) {
  State& s = *state_;
  TwinMessage m;
  m.kind = TwinMessage::Kind::unblock;
  m.name = subject;
  s.enqueue(s.write_and_publish(
      [k = s.own_record(m).first]() -> std::vector<Args> {
        return {{"DEL", k}};
      },
      m));
}

void TwinLink::lookup_affinity(const std::string& cluster, const std::string& key,
                               std::chrono::milliseconds timeout, LookupCallback done) {
  State& s = *state_;
  if (!s.connected) {
    s.answer(done, {LookupResult::Status::unavailable, {}});
    return;
  }
  std::uint64_t id = 0;
  bool earlier = false;
  {
    std::lock_guard lock(s.mutex);
    id = s.next_lookup++;
    const auto deadline = Clock::now() + timeout;
    earlier = deadline < s.deadline_sleep;
    s.pending[id] = State::Pending{deadline, std::move(done)};
  }
  if (earlier) {
    s.deadline_changed.notify_all();
  }
  Job job;
  job.prepare = [sp = state_.get(), id, k = s.affinity_key(cluster, key)]() -> std::vector<Args> {
    std::lock_guard lock(sp->mutex);
    if (!sp->pending.contains(id)) {
      return {};  // answered already (timeout): no need to ask
    }
    return {{"GET", k}};
  };
  job.done = [sp = state_.get(), id](std::vector<Reply>& replies) {
    LookupCallback cb = sp->take(id);
    if (!cb) {
      return;
    }
    const Reply& r = replies.front();
    if (!r) {
      sp->answer(cb, {LookupResult::Status::unavailable, {}});
      return;
    }
    const std::vector<std::string> w = split(reply_text(r.get()));
    if (r->type == REDIS_REPLY_STRING && w.size() >= 2 && w[0] == "1") {
      sp->answer(cb, {LookupResult::Status::hit, w[1]});
    } else {
      sp->answer(cb, {LookupResult::Status::miss, {}});
    }
  };
  s.enqueue(std::move(job));
}

TwinStats TwinLink::stats() const {
  std::lock_guard lock(state_->mutex);
  TwinStats out = state_->stats;
  const auto now = std::chrono::system_clock::now();
  for (const auto& [name, seen] : state_->instances) {
    if (now - seen <= kInstanceMemory) {
      out.instances.emplace_back(name, seen);
    }
  }
  return out;
}

const std::string& TwinLink::instance() const {
  return state_->config.instance;
}

}  // namespace pb::state
