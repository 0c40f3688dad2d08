#pragma once

// TwinLink: what one balancer shares with its twins through Redis. The daemon uses it through
// control::Twins (control/twins.hpp), which ties it to the affinity map, node states, routes,
// status and metrics.
//
// Threads. The link owns three threads of its own and never runs Redis I/O on the caller's:
//  - the command thread owns the command connection (SET/GET/DEL/PUBLISH/EVAL/SCAN) and works
//    through a queue (bounded: 100000 jobs; beyond, writes are dropped and counted). It takes
//    every queued job at once (up to 1000), sends all their commands in one pipelined write and
//    then reads the replies in order, handing each job its own: a burst of first-seen clients
//    costs one round trip, not three per client, and jobs still run in the order they were
//    queued (an instance's messages keep their order). It connects with AUTH (password read from
//    password_file at every connection) and SELECT, checks with PING that the server is a
//    Redis, and reconnects with a back-off (100 ms doubling to 5 s). The loss of the connection
//    is logged once (warn), not per retry.
//  - the subscriber thread owns the SUBSCRIBE connection and delivers the twins' messages.
//  - the deadline thread answers lookups whose time ran out.
// Every public function only queues work and returns at once; none waits for Redis.
//
// Lookups. lookup_affinity() takes a completion callback that is called exactly once, from one of
// the link's threads: with the answer, or with `timeout` when `timeout` elapsed first (also when
// Redis is stopped and does not answer), or at once with `unavailable` while the link is not
// connected. An event-loop caller posts the result back to its own executor from the callback
// (for example with boost::asio::post), so a worker never blocks. A reply that arrives after the
// deadline is dropped.
//
// Sharing rules. Affinity entries are written with SET NX EX ttl: the first writer wins. When an
// entry exists already with another node, on_conflict reports the winner's entry (the caller moves
// the client there on its next connection). The decision is one command (a short Lua script run
// with EVAL: SET NX EX, then PUBLISH when it won or the winner's value when it lost; atomic, so
// no follow-up round trip). Every change is also PUBLISHed to the twins, who
// ignore their own messages (by instance name). Node states, routes and blocks are stored under
// the prefix too (so that a twin started later finds them) and published.
//
// Outages. After every (re)connection of the command connection except the first, the link asks
// the caller's snapshot callback for what the local side holds and publishes it again (SET NX,
// conflicts reported as above: this covers a Redis that restarted empty and decisions made during
// the outage), sends the writes queued meanwhile (the operator's blocks, unblocks, states made
// while cut off), then re-reads everything under the prefix and delivers what other instances
// wrote through on_message (what it missed), and the blocks Redis holds through on_reread, so
// that the caller lifts those a twin removed meanwhile (unblocked: there is no record of a
// removal to deliver). The same re-read runs after the subscriber reconnects. Whether Redis
// kept its data since the previous complete re-read is told by the epoch record (PREFIX
// "epoch", a random value written with SET NX when missing): a Redis that restarted empty has
// a new one, and its missing blocks were not lifted by anyone (BlocksRead::redis_lost_data: the
// caller publishes its blocks again).
//
// Wire format (version 1). Keys: PREFIX "a:" CLUSTER ":" HEXKEY (affinity, value
// "1 NODE LAST_SEEN INSTANCE", expiring with the cluster's ttl), PREFIX "n:" CLUSTER ":" NODE
// (value "1 STATE INSTANCE"), PREFIX "r:" NAME (value "1 TARGET INSTANCE"), PREFIX "b:" SUBJECT
// (value "1 UNTIL INSTANCE", expiring with the block). Messages on channel PREFIX "events":
// "1 INSTANCE KIND FIELDS..." with KIND a|p|f|n|r|b|u (affinity, pin, forget, node state, route,
// block, unblock). Fields are names (no spaces), hex client keys and Unix times in seconds.
// A block's SUBJECT is its network in canonical text (net::network_text: "192.0.2.7",
// "192.0.2.0/24", "2001:db8::/32"), followed by "@" LISTENER for a block of one listener only
// ("192.0.2.0/24@web"); network text never holds '@'. UNTIL is 0 for a block without end.
// PREFIX "epoch" holds the epoch (any text; no TTL).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "protobalance/config/config.hpp"
#include "protobalance/state/twin_record.hpp"

namespace pb::state {

struct LookupResult {
  enum class Status : std::uint8_t { hit, miss, timeout, unavailable };
  Status status = Status::miss;
  std::string node;  // when hit
};

// Plain values for status and metrics, taken under one lock.
struct TwinStats {
  bool connected = false;   // the command connection is up
  bool subscribed = false;  // the subscription is up: twins' messages reach us
  SystemTime since;  // of the last change of `connected`
  std::uint64_t messages_sent = 0;
  std::uint64_t messages_received = 0;
  std::uint64_t lookups_hit = 0;
  std::uint64_t lookups_miss = 0;
  std::uint64_t lookups_timeout = 0;  // includes lookups answered `unavailable`
  std::uint64_t conflicts = 0;        // affinity races lost to another writer
  std::uint64_t dropped = 0;          // writes dropped: 100000 queued during an outage
  std::string last_error;             // the last connection error; empty once connected
  std::vector<std::pair<std::string, SystemTime>> instances;  // twins heard in the last 10 min
};

// What a complete re-read found: the subject of every block record in Redis (every instance's).
// `continuous` when the comparison with what this balancer holds is sound: Redis kept its data
// since the previous complete re-read of this link (same epoch) and every write of ours queued
// before `read_from` reached Redis (none dropped, none on a connection that failed). A block
// the caller shared (applied from a twin, or made here and published) before `read_from` and
// missing from `subjects` was then lifted by a twin.
// `redis_lost_data` when Redis lost its data since the previous complete re-read of this link
// (another epoch: restarted empty, flushed): a block held here and missing from `subjects` was
// lifted by no one, and the caller publishes it again. Never with `continuous`; neither on the
// link's first complete re-read (nothing to compare with), nor when only a write of ours may be
// lost (same epoch).
struct BlocksRead {
  std::set<std::string> subjects;
  std::chrono::steady_clock::time_point read_from;
  bool continuous = false;
  bool redis_lost_data = false;
};

struct TwinCallbacks {
  // A twin's message, or an entry found by the re-read after an outage. Called on a link thread.
  std::function<void(const TwinMessage&)> on_message;
  // Our affinity write lost the race: `winner` is the entry in Redis. Called on a link thread.
  std::function<void(const AffinityEntry& winner)> on_conflict;
  // Lists what the local side holds, for the re-publication after an outage: calls `emit` once
  // per affinity entry. Called on the command thread.
  std::function<void(const std::function<void(const AffinityEntry&)>& emit)> snapshot;
  // After each complete re-read (after its on_message calls). Called on the command thread.
  std::function<void(const BlocksRead&)> on_reread;
};

class TwinLink {
 public:
  // Starts the threads and the first connection attempt; returns at once. A wrong address,
  // password or database, or a server that is not Redis, shows in stats().last_error and the
  // log; the link keeps retrying with back-off and the caller carries on without sharing.
  TwinLink(config::TwinConfig config, TwinCallbacks callbacks);
  ~TwinLink();  // stops the threads; pending lookups are answered `unavailable`
  TwinLink(const TwinLink&) = delete;
  TwinLink& operator=(const TwinLink&) = delete;

  // First writer wins (see above); the decision is published when ours won.
  void publish_affinity(const AffinityEntry& entry);
  // Sets the entry whatever was there (pbadmin affinity pin) and publishes it.
  void publish_pin(const AffinityEntry& entry);
  // Deletes the entry (pbadmin affinity forget) and publishes it.
  void publish_forget(const std::string& cluster, const std::string& key);
  void publish_node_state(const std::string& cluster, const std::string& node,
                          const std::string& state);
  // An empty target resets the route.
  void publish_route(const std::string& name, const std::string& target);
  // `until` = epoch: no end.
  void publish_block(const std::string& subject, SystemTime until);
  void publish_unblock(const std::string& subject);

  using LookupCallback = std::function<void(const LookupResult&)>;
  void lookup_affinity(const std::string& cluster, const std::string& key,
                       std::chrono::milliseconds timeout, LookupCallback done);

  TwinStats stats() const;
  const std::string& instance() const;

 private:
  struct State;
  std::shared_ptr<State> state_;
};

}  // namespace pb::state
