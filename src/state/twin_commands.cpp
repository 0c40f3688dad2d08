// The twin link's command thread: one connection to Redis that sends the queued jobs in
// pipelined batches (writes, publications, lookups), and re-reads everything after an outage.
#include <fmt/format.h>
#include <poll.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <random>

#include "twin_link_state.hpp"
#include "twin_text.hpp"

namespace pb::state {

using twin_redis::append;
using twin_redis::Args;
using twin_redis::Clock;
using twin_redis::command;
using twin_redis::Context;
using twin_redis::Job;
using twin_redis::kDecideScript;
using twin_redis::kFirstBackoff;
using twin_redis::kMaxBackoff;
using twin_redis::kMaxBatch;
using twin_redis::kMaxQueuedJobs;
using twin_redis::next_reply;
using twin_redis::Reply;
using twin_redis::reply_text;
using twin_text::split;
using twin_text::unix_time;

void TwinLink::State::run_commands() {
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
bool TwinLink::State::closed_by_peer(redisContext* c) {
  pollfd fd{c->fd, POLLIN | POLLRDHUP, 0};
  if (::poll(&fd, 1, 0) <= 0 || fd.revents == 0) {
    return false;
  }
  c->err = REDIS_ERR_EOF;
  std::snprintf(c->errstr, sizeof c->errstr, "%s", "Server closed the connection");
  return true;
}

// Sends the commands of every job at once, then hands each job its replies, in order.
void TwinLink::State::run_batch(redisContext* c, std::vector<Job>& batch) {
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

void TwinLink::State::enqueue(Job job) {
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

void TwinLink::State::count_sent() {
  std::lock_guard lock(mutex);
  ++stats.messages_sent;
}

// The text that publishes `m` as this instance's (twin_record.hpp).
std::string TwinLink::State::own_message(TwinMessage m) const {
  m.instance = config.instance;
  return twin_message_text(m);
}

// A job that writes (`writes`, built when sent; none: nothing to do) and then publishes `m`,
// both in the same batch, so that an instance's messages keep their order.
Job TwinLink::State::write_and_publish(std::function<std::vector<Args>()> writes,
                                       const TwinMessage& m) {
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
std::pair<std::string, std::string> TwinLink::State::own_record(TwinMessage m) const {
  m.instance = config.instance;
  return {config.key_prefix + twin_record_key(m), twin_record_value(m)};
}

std::string TwinLink::State::affinity_key(const std::string& cluster,
                                          const std::string& key) const {
  TwinMessage m;
  m.kind = TwinMessage::Kind::forget;
  m.affinity.cluster = cluster;
  m.affinity.key = key;
  return own_record(std::move(m)).first;
}

// Seconds the entry has left; 0 when it has expired already.
std::int64_t TwinLink::State::remaining(const AffinityEntry& e) {
  const auto end = e.last_seen + e.ttl;
  return std::max<std::int64_t>(
      0, std::chrono::duration_cast<std::chrono::seconds>(end - std::chrono::system_clock::now())
             .count());
}

// An affinity write: first writer wins (one script: SET NX EX, PUBLISH when won, the winner's
// value when lost), or SET EX and PUBLISH for a pin.
Job TwinLink::State::affinity_job(const AffinityEntry& e, bool pin) {
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

std::string TwinLink::State::affinity_value(const AffinityEntry& e) const {
  TwinMessage m;
  m.kind = TwinMessage::Kind::affinity;
  m.affinity = e;
  return own_record(std::move(m)).second;
}

void TwinLink::State::republish(redisContext* c) {
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

void TwinLink::State::note_writes_lost() {
  std::lock_guard lock(mutex);
  writes_lost = true;
}

// The epoch record (PREFIX "epoch"): a random value the first balancer to find it missing
// writes. It stays as long as Redis keeps its data; empty when it cannot be read.
std::string TwinLink::State::read_epoch(redisContext* c) const {
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
void TwinLink::State::resync(redisContext* c, Clock::time_point from) {
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

}  // namespace pb::state
