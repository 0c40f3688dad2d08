#pragma once

// The twin link's state, shared by the files of its threads: twin_link.cpp (the link's
// interface, its connections to Redis and the lookups' deadlines), twin_commands.cpp (the
// command thread: writes, publications, lookups, the re-read after an outage) and
// twin_subscriber.cpp (the subscriber thread: what the twins publish). A private header: only
// src/state includes it.

#include <hiredis/hiredis.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "protobalance/state/twin_link.hpp"

namespace pb::state {
namespace twin_redis {

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
using Args = std::vector<std::string>;

// Runs one command; nullptr when the connection failed (then c->err says why).
Reply command(redisContext* c, const Args& args);
// The text of a string, status or error reply; empty for anything else.
std::string reply_text(const redisReply* r);
// Appends one command to the pipeline (sent with the next read of a reply).
void append(redisContext* c, const Args& args);
// The next reply of a pipeline (flushes what was appended first); nullptr when the connection
// failed.
Reply next_reply(redisContext* c);

// One unit of work of the command thread. The commands of every queued job are sent together
// (pipelined: appended, one write), then the replies are read in order and handed to each job.
struct Job {
  // Called just before sending: the commands to send; none when the job has nothing left to do
  // (then `done` is not called).
  std::function<std::vector<Args>()> prepare;
  // The replies to those commands, in order; a null Reply when the connection failed first.
  std::function<void(std::vector<Reply>&)> done;
};

}  // namespace twin_redis

struct TwinLink::State {
  using Clock = twin_redis::Clock;
  using Reply = twin_redis::Reply;
  using Context = twin_redis::Context;
  using Args = twin_redis::Args;
  using Job = twin_redis::Job;

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

  // ---- connections (twin_link.cpp) ----
  Context open(std::string& error);
  void set_error(const std::string& error);
  void set_connected(bool up);
  void set_subscribed(bool up);
  bool pause(std::chrono::milliseconds d);

  // ---- command thread (twin_commands.cpp) ----
  void run_commands();
  static bool closed_by_peer(redisContext* c);
  static void run_batch(redisContext* c, std::vector<Job>& batch);
  void enqueue(Job job);
  void count_sent();
  std::string own_message(TwinMessage m) const;
  Job write_and_publish(std::function<std::vector<Args>()> writes, const TwinMessage& m);
  std::pair<std::string, std::string> own_record(TwinMessage m) const;
  std::string affinity_key(const std::string& cluster, const std::string& key) const;
  static std::int64_t remaining(const AffinityEntry& e);
  Job affinity_job(const AffinityEntry& e, bool pin);
  std::string affinity_value(const AffinityEntry& e) const;
  void republish(redisContext* c);
  void note_writes_lost();
  std::string read_epoch(redisContext* c) const;
  void resync(redisContext* c, Clock::time_point from);

  // ---- subscriber thread (twin_subscriber.cpp) ----
  void run_subscriber();
  bool listen(redisContext* c);
  void on_published(const std::string& text);
  void deliver(const TwinMessage& m);

  // ---- lookups (twin_link.cpp) ----
  LookupCallback take(std::uint64_t id);
  void answer(const LookupCallback& done, LookupResult result);
  void fail_pending();
  void run_deadlines();
};

}  // namespace pb::state
