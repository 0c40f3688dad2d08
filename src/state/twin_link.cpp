#include "protobalance/state/twin_link.hpp"

#include <fmt/format.h>
#include <hiredis/hiredis.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <utility>

#include "twin_text.hpp"

namespace pb::state {
namespace {

using twin_text::kFormatVersion;
using twin_text::split;
using twin_text::to_unix;
using twin_text::unix_time;

using Clock = std::chrono::steady_clock;
constexpr auto kConnectTimeout = std::chrono::milliseconds(1000);
constexpr auto kCommandTimeout = std::chrono::milliseconds(2000);
constexpr auto kFirstBackoff = std::chrono::milliseconds(100);
constexpr auto kMaxBackoff = std::chrono::milliseconds(5000);
constexpr auto kInstanceMemory = std::chrono::minutes(10);
constexpr std::size_t kMaxQueuedJobs = 100000;
// Jobs sent together in one pipelined batch at most (bounds the buffers and the time a job waits
// for the ones before it).
constexpr std::size_t kMaxBatch = 1000;

// An affinity decision in one command, atomically: SET NX EX and, when it won, PUBLISH; when it
// lost, the winner's value. KEYS[1] = key; ARGV = value, ttl, channel, message. Returns 1 when
// won, the value in Redis when lost (nil if it expired in between, never at once: it is atomic).
constexpr const char* kDecideScript =
    "if redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2], 'NX') then "
    "redis.call('PUBLISH', ARGV[3], ARGV[4]) return 1 end "
    "return redis.call('GET', KEYS[1])";

struct ReplyDeleter {
  void operator()(redisReply* r) const { freeReplyObject(r); }
};
using Reply = std::unique_ptr<redisReply, ReplyDeleter>;
struct ContextDeleter {
  void operator()(redisContext* c) const { redisFree(c); }
};
using Context = std::unique_ptr<redisContext, ContextDeleter>;

timeval to_timeval(std::chrono::milliseconds d) {
  return timeval{static_cast<time_t>(d.count() / 1000),
                 static_cast<suseconds_t>((d.count() % 1000) * 1000)};
}

// Runs one command; nullptr when the connection failed (then c->err says why).
Reply command(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lengths.push_back(a.size());
  }
  return Reply(static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lengths.data())));
}

std::string reply_text(const redisReply* r) {
  return r != nullptr && r->str != nullptr ? std::string(r->str, r->len) : std::string{};
}

using Args = std::vector<std::string>;

// One unit of work of the command thread. The commands of every queued job are sent together
// (pipelined: appended, one write), then the replies are read in order and handed to each job.
struct Job {
  // Called just before sending: the commands to send; none when the job has nothing left to do
  // (then `done` is not called).
  std::function<std::vector<Args>()> prepare;
  // The replies to those commands, in order; a null Reply when the connection failed first.
  std::function<void(std::vector<Reply>&)> done;
};

void append(redisContext* c, const Args& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  argv.reserve(args.size());
  lengths.reserve(args.size());
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lengths.push_back(a.size());
  }
  redisAppendCommandArgv(c, static_cast<int>(argv.size()), argv.data(), lengths.data());
}

// The next reply of a pipeline (flushes what was appended first); nullptr when the connection
// failed.
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

}  // namespace

struct TwinLink::State {
  config::TwinConfig config;
  TwinCallbacks callbacks;
  std::string channel;

  mutable std::mutex mutex;
  std::condition_variable wake;
  bool stopping = false;
  std::deque<Job> jobs;
  TwinStats stats;
  std::map<std::string, SystemTime> instances;

  // Pending lookups: id -> (deadline, callback). Whoever removes the entry answers it.
  struct Pending {
    Clock::time_point deadline;
    LookupCallback done;
  };
  std::map<std::uint64_t, Pending> pending;
  std::uint64_t next_lookup = 1;
  std::condition_variable deadline_changed;
  // Until when the deadline thread sleeps: a new lookup wakes it only when its deadline is
  // earlier (lookups with one timeout come in deadline order and wake nobody).
  Clock::time_point deadline_sleep = Clock::time_point::min();
  std::string own_prefix;  // "1 INSTANCE ": how our own messages start

  std::atomic<bool> connected{false};
  std::atomic<bool> resync_requested{false};
  // A write of ours that may not have reached Redis since the last re-read began (dropped from
  // a full queue, or sent on a connection that failed): the next re-read cannot tell a block
  // lifted by a twin from one whose write was lost. Guarded by `mutex`.
  bool writes_lost = false;
  // The epoch record's value the last complete re-read found (command thread only); empty
  // before the first. A different value means Redis lost its data meanwhile (restarted without
  // persistence, flushed).
  std::string epoch;
  int wake_pipe[2] = {-1, -1};  // wakes the subscriber's poll() when stopping

  std::thread command_thread;
  std::thread subscriber_thread;
  std::thread deadline_thread;

  // ---- connections ----

  // Connects, authenticates, selects the database and checks with PING that it is a Redis.
  // Returns nullptr with `error` set on failure.
  Context open(std::string& error) {
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

  void set_error(const std::string& error) {
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

  void set_connected(bool up) {
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

  void set_subscribed(bool up) {
    std::lock_guard lock(mutex);
    stats.subscribed = up;
  }

  // Waits for `d` or until stopping; returns false when stopping.
  bool pause(std::chrono::milliseconds d) {
    std::unique_lock lock(mutex);
    return !wake.wait_for(lock, d, [&] { return stopping; });
  }

  // ---- command thread ----

  void run_commands() {
    auto backoff = kFirstBackoff;
    bool first = true;
    while (true) {
      std::string error;
      Context c = open(error);
      if (!c) {
        set_connected(false);
        set_error(error);
        fail_pending();
        if (!pause(backoff)) {
          return;
        }
        backoff = std::min(backoff * 2, kMaxBackoff);
        continue;
      }
      backoff = kFirstBackoff;
      set_connected(true);
      spdlog::info("twin: connected to Redis at {} as '{}'", config.redis, config.instance);
      if (!first) {
        republish(c.get());
      }
      first = false;
      // The re-read runs once the writes queued before it are in Redis (those of the outage
      // included): it then sees this balancer's own changes, so that a block made here while
      // cut off is not taken for one a twin lifted, nor one lifted here re-applied.
      resync_requested = true;
      while (c->err == 0) {
        std::vector<Job> batch;
        bool reread = false;
        Clock::time_point reread_from;
        {
          std::unique_lock lock(mutex);
          wake.wait_for(lock, std::chrono::milliseconds(200),
                        [&] { return stopping || !jobs.empty() || resync_requested.load(); });
          if (stopping) {
            return;
          }
          const std::size_t n = std::min(jobs.size(), kMaxBatch);
          batch.reserve(n);
          for (std::size_t i = 0; i < n; ++i) {
            batch.push_back(std::move(jobs.front()));
            jobs.pop_front();
          }
          // Every job queued before `reread_from` is in this batch or ran before it.
          if (jobs.empty() && resync_requested.exchange(false)) {
            reread = true;
            reread_from = Clock::now();
          }
        }
        if (!batch.empty()) {
          run_batch(c.get(), batch);
          if (c->err != 0) {
            note_writes_lost();
          }
        }
        if (reread) {
          resync(c.get(), reread_from);
        } else if (batch.empty() && closed_by_peer(c.get())) {
          break;
        }
      }
      spdlog::warn("twin: lost the connection to Redis at {}: {}; working alone, reconnecting",
                   config.redis, c->errstr);
      {
        std::lock_guard lock(mutex);
        stats.last_error = c->errstr;
      }
      set_connected(false);
      fail_pending();
    }
  }

  // An idle command connection has nothing to read: anything readable is the end of the stream
  // (Redis stopped or restarted). Noticed here, the loss is reported and the outage handled
  // without waiting for the next command. Marks the context failed.
  static bool closed_by_peer(redisContext* c) {
    pollfd fd{c->fd, POLLIN | POLLRDHUP, 0};
    if (::poll(&fd, 1, 0) <= 0 || fd.revents == 0) {
      return false;
    }
    c->err = REDIS_ERR_EOF;
    std::snprintf(c->errstr, sizeof c->errstr, "%s", "Server closed the connection");
    return true;
  }

  // Sends the commands of every job at once, then hands each job its replies, in order.
  static void run_batch(redisContext* c, std::vector<Job>& batch) {
    std::vector<std::vector<Args>> commands(batch.size());
    for (std::size_t i = 0; i < batch.size(); ++i) {
      commands[i] = batch[i].prepare();
      for (const Args& args : commands[i]) {
        if (c->err == 0) {
          append(c, args);
        }
      }
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      if (commands[i].empty()) {
        continue;
      }
      std::vector<Reply> replies;
      replies.reserve(commands[i].size());
      for (std::size_t k = 0; k < commands[i].size(); ++k) {
        replies.push_back(next_reply(c));
      }
      batch[i].done(replies);
    }
  }

  void enqueue(Job job) {
    {
      std::lock_guard lock(mutex);
      if (stopping) {
        return;
      }
      if (jobs.size() >= kMaxQueuedJobs) {
        // A long outage: drop new writes rather than grow without bound. Affinity decisions are
        // published again from the caller's snapshot after reconnection.
        ++stats.dropped;
        writes_lost = true;
        return;
      }
      jobs.push_back(std::move(job));
    }
    wake.notify_all();
  }

  void count_sent() {
    std::lock_guard lock(mutex);
    ++stats.messages_sent;
  }

  // The text that publishes `m` as this instance's (twin_record.hpp).
  std::string own_message(TwinMessage m) const {
    m.instance = config.instance;
    return twin_message_text(m);
  }

  // A job that writes (`writes`, built when sent; none: nothing to do) and then publishes `m`,
  // both in the same batch, so that an instance's messages keep their order.
  Job write_and_publish(std::function<std::vector<Args>()> writes, const TwinMessage& m) {
    Job job;
    job.prepare = [this, writes = std::move(writes), text = own_message(m)] {
      std::vector<Args> commands = writes();
      if (!commands.empty()) {
        commands.push_back({"PUBLISH", channel, text});
      }
      return commands;
    };
    job.done = [this](std::vector<Reply>& replies) {
      const Reply& r = replies.back();
      if (r && r->type != REDIS_REPLY_ERROR) {
        count_sent();
      }
    };
    return job;
  }

  // The key (with the prefix) and value of the record that `m` writes, as this instance's
  // (twin_record.hpp); the value is empty for a change that deletes the record.
  std::pair<std::string, std::string> own_record(TwinMessage m) const {
    m.instance = config.instance;
    return {config.key_prefix + twin_record_key(m), twin_record_value(m)};
  }

  std::string affinity_key(const std::string& cluster, const std::string& key) const {
    TwinMessage m;
    m.kind = TwinMessage::Kind::forget;
    m.affinity.cluster = cluster;
    m.affinity.key = key;
    return own_record(std::move(m)).first;
  }

  // Seconds the entry has left; 0 when it has expired already.
  static std::int64_t remaining(const AffinityEntry& e) {
    const auto end = e.last_seen + e.ttl;
    return std::max<std::int64_t>(
        0, std::chrono::duration_cast<std::chrono::seconds>(end - std::chrono::system_clock::now())
               .count());
  }

  // An affinity write: first writer wins (one script: SET NX EX, PUBLISH when won, the winner's
  // value when lost), or SET EX and PUBLISH for a pin.
  Job affinity_job(const AffinityEntry& e, bool pin) {
    TwinMessage m;
    m.kind = pin ? TwinMessage::Kind::pin : TwinMessage::Kind::affinity;
    m.affinity = e;
    if (pin) {
      return write_and_publish(
          [this, e]() -> std::vector<Args> {
            const std::int64_t ttl = remaining(e);
            if (ttl <= 0) {
              return {};
            }
            return {{"SET", affinity_key(e.cluster, e.key), affinity_value(e), "EX",
                     std::to_string(ttl)}};
          },
          m);
    }
    Job job;
    job.prepare = [this, e, text = own_message(m)]() -> std::vector<Args> {
      const std::int64_t ttl = remaining(e);
      if (ttl <= 0) {
        return {};
      }
      return {{"EVAL", kDecideScript, "1", affinity_key(e.cluster, e.key), affinity_value(e),
               std::to_string(ttl), channel, text}};
    };
    job.done = [this, e](std::vector<Reply>& replies) {
      const Reply& r = replies.front();
      if (!r) {
        return;
      }
      if (r->type == REDIS_REPLY_INTEGER) {
        count_sent();
        return;
      }
      if (r->type != REDIS_REPLY_STRING) {
        if (r->type == REDIS_REPLY_ERROR) {
          spdlog::warn("twin: Redis refused an affinity write: {}", reply_text(r.get()));
        }
        return;
      }
      // Lost the race (or re-publishing an entry someone else holds): report the winner.
      const std::vector<std::string> w = split(reply_text(r.get()));
      if (w.size() < 3 || w[0] != "1" || w[1] == e.node) {
        return;
      }
      AffinityEntry winner = e;
      winner.node = w[1];
      winner.last_seen = unix_time(w[2]).value_or(e.last_seen);
      {
        std::lock_guard lock(mutex);
        ++stats.conflicts;
      }
      if (callbacks.on_conflict) {
        callbacks.on_conflict(winner);
      }
    };
    return job;
  }

  std::string affinity_value(const AffinityEntry& e) const {
    TwinMessage m;
    m.kind = TwinMessage::Kind::affinity;
    m.affinity = e;
    return own_record(std::move(m)).second;
  }

  void republish(redisContext* c) {
    if (!callbacks.snapshot) {
      return;
    }
    std::size_t count = 0;
    std::vector<Job> batch;
    callbacks.snapshot([&](const AffinityEntry& e) {
      if (c->err == 0) {
        batch.push_back(affinity_job(e, false));
        ++count;
        if (batch.size() >= kMaxBatch) {
          run_batch(c, batch);
          batch.clear();
        }
      }
    });
    run_batch(c, batch);
    spdlog::info("twin: published again {} affinity entries held locally", count);
  }

  void note_writes_lost() {
    std::lock_guard lock(mutex);
    writes_lost = true;
  }

  // The epoch record (PREFIX "epoch"): a random value the first balancer to find it missing
  // writes. It stays as long as Redis keeps its data; empty when it cannot be read.
  std::string read_epoch(redisContext* c) const {
    std::random_device device;
    const std::string mine = fmt::format("{:08x}{:08x}", device(), device());
    Reply set = command(c, {"SET", config.key_prefix + "epoch", mine, "NX"});
    Reply get = command(c, {"GET", config.key_prefix + "epoch"});
    if (!set || !get || get->type != REDIS_REPLY_STRING) {
      return {};
    }
    return reply_text(get.get());
  }

  // Reads every record under the prefix and delivers those written by other instances; then,
  // when the whole prefix was read, tells the caller which blocks Redis holds (on_reread).
  // `from`: when the re-read began; every write of ours queued before was sent before it.
  void resync(redisContext* c, Clock::time_point from) {
    bool complete_since_last = false;
    {
      std::lock_guard lock(mutex);
      complete_since_last = !writes_lost;
      writes_lost = false;
    }
    // Compared with the epoch of the previous complete re-read: one that failed half-way
    // leaves it, so that the next complete one still tells that Redis lost its data.
    const std::string current = read_epoch(c);
    BlocksRead blocks;
    blocks.read_from = from;
    blocks.continuous = complete_since_last && !epoch.empty() && current == epoch;
    blocks.redis_lost_data = !epoch.empty() && !current.empty() && current != epoch;
    std::string cursor = "0";
    do {
      Reply r = command(c, {"SCAN", cursor, "MATCH", config.key_prefix + "*", "COUNT", "500"});
      if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
        note_writes_lost();  // an incomplete re-read: the next one cannot compare with this
        return;
      }
      cursor = reply_text(r->element[0]);
      const redisReply* keys = r->element[1];
      for (std::size_t i = 0; i < keys->elements; ++i) {
        const std::string key = reply_text(keys->element[i]);
        Reply v = command(c, {"GET", key});
        if (!v) {
          note_writes_lost();
          return;
        }
        if (v->type != REDIS_REPLY_STRING) {
          continue;
        }
        Reply t = command(c, {"TTL", key});
        const std::int64_t ttl = t && t->type == REDIS_REPLY_INTEGER ? t->integer : -1;
        if (auto message = parse_twin_record(std::string_view(key).substr(config.key_prefix.size()),
                                             reply_text(v.get()), ttl)) {
          if (message->kind == TwinMessage::Kind::block) {
            blocks.subjects.insert(message->name);
          }
          deliver(*message);
        }
      }
    } while (cursor != "0");
    if (!current.empty()) {
      epoch = current;
    }
    if (callbacks.on_reread) {
      callbacks.on_reread(blocks);
    }
  }

  // ---- subscriber thread ----

  void run_subscriber() {
    auto backoff = kFirstBackoff;
    bool first = true;
    while (true) {
      std::string error;
      Context c = open(error);
      if (c) {
        Reply r = command(c.get(), {"SUBSCRIBE", channel});
        if (!r || r->type != REDIS_REPLY_ARRAY) {
          c.reset();
        }
      }
      if (!c) {
        if (!pause(backoff)) {
          return;
        }
        backoff = std::min(backoff * 2, kMaxBackoff);
        continue;
      }
      backoff = kFirstBackoff;
      if (!first) {
        // Messages published while we were not subscribed are found by a re-read.
        resync_requested = true;
        wake.notify_all();
      }
      first = false;
      set_subscribed(true);
      const bool failed = listen(c.get());
      set_subscribed(false);
      if (!failed) {
        return;
      }
    }
  }

  // Delivers messages until the connection fails (returns true) or the link stops (false).
  bool listen(redisContext* c) {
    while (true) {
      pollfd fds[2] = {{c->fd, POLLIN, 0}, {wake_pipe[0], POLLIN, 0}};
      const int n = ::poll(fds, 2, 1000);
      {
        std::lock_guard lock(mutex);
        if (stopping) {
          return false;
        }
      }
      if (n <= 0 || (fds[0].revents == 0)) {
        continue;
      }
      if (redisBufferRead(c) != REDIS_OK) {
        return true;
      }
      void* raw = nullptr;
      while (redisGetReplyFromReader(c, &raw) == REDIS_OK && raw != nullptr) {
        Reply r(static_cast<redisReply*>(raw));
        raw = nullptr;
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
            reply_text(r->element[0]) == "message") {
          on_published(reply_text(r->element[2]));
        }
      }
      if (c->err != 0) {
        return true;
      }
    }
  }

  void on_published(const std::string& text) {
    if (text.starts_with(own_prefix)) {
      return;  // ours, seen again through the subscription
    }
    const std::optional<TwinMessage> m = parse_twin_message(text);
    if (!m || m->instance == config.instance) {
      return;
    }
    {
      std::lock_guard lock(mutex);
      ++stats.messages_received;
    }
    deliver(*m);
  }

  void deliver(const TwinMessage& m) {
    if (m.instance == config.instance) {
      return;
    }
    {
      std::lock_guard lock(mutex);
      instances[m.instance] = std::chrono::system_clock::now();
    }
    if (callbacks.on_message) {
      callbacks.on_message(m);
    }
  }

  // ---- lookups ----

  // Removes and returns the callback of lookup `id` if it is still pending.
  LookupCallback take(std::uint64_t id) {
    std::lock_guard lock(mutex);
    auto it = pending.find(id);
    if (it == pending.end()) {
      return nullptr;
    }
    LookupCallback done = std::move(it->second.done);
    pending.erase(it);
    return done;
  }

  void answer(const LookupCallback& done, LookupResult result) {
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

  void fail_pending() {
    std::map<std::uint64_t, Pending> failed;
    {
      std::lock_guard lock(mutex);
      failed.swap(pending);
    }
    for (auto& [id, p] : failed) {
      answer(p.done, {LookupResult::Status::unavailable, {}});
    }
  }

  void run_deadlines() {
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
};

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
      [k = s.own_record(m).first]() -> std::vector<Args> { return {{"DEL", k}}; }, m));
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
      [k = s.own_record(m).first]() -> std::vector<Args> { return {{"DEL", k}}; }, m));
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

const std::string& TwinLink::instance() const { return state_->config.instance; }

}  // namespace pb::state
