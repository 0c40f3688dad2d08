#pragma once

// Per-client limits of a listener: `max_client_connections` (concurrent connections per client
// address) and `max_client_rate = "N/PERIOD"` (new connections per client address, a token
// bucket). Pure code, no sockets; the clock is passed in (`now`), so tests drive time.

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <boost/asio/ip/address.hpp>

namespace pb::net {

// A token bucket: a burst of `connections`, then `connections` per `period`.
struct RateLimit {
  std::uint32_t connections = 0;
  std::chrono::milliseconds period{0};
  bool operator==(const RateLimit&) const = default;
};

// Parses "N/PERIOD": N from 1 to 1,000,000, PERIOD a duration as in the configuration ("1s",
// "500ms", "1m", "1h"), not zero, at most a day. `error` (when there is no value) says what is
// expected, for a config message "FILE:LINE:COL: <error>".
struct RateLimitResult {
  std::optional<RateLimit> limit;
  std::string error;
};
RateLimitResult parse_rate_limit(std::string_view text);

// The per-client state of one listener, shared by all worker threads of the process.
//
// Thread model: the limits are per process (a client's connections on every worker count
// together), so one instance is shared by all workers. Its table is split into kShards shards
// by a hash of the client key, each with its own mutex: a worker holds one shard lock for a
// few hash-table operations per accepted (and per closed) connection, and two workers contend
// only when their clients hash to the same shard. (Atomics alone cannot give a bounded table
// with reclamation; one lock per process would serialise every accept.)
//
// The client key: an IPv4 address (or an IPv4-mapped IPv6 one) as is, an IPv6 address by its
// /64 (one host usually owns a whole /64, and keying by /128 would let it dodge the limits).
//
// Bounded memory: at most capacity() clients are tracked (entries are preallocated lazily up
// to that many, never more). An entry is reclaimed once it is quiet: no connection open and its
// bucket full again. When a new client arrives and its shard is full, the least recently used
// entry with no connection open is reclaimed even if its bucket is not full (that client's
// rate history is forgotten: under a flood of more distinct clients than the table holds, a
// rate limit can only be approximate). If every entry of the shard has connections open, the
// new client is admitted untracked (fail open: counted in untracked()); choose a capacity
// above the listener's expected concurrent clients.
class ClientLimits : public std::enable_shared_from_this<ClientLimits> {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr std::size_t kShards = 16;

  struct Options {
    std::uint32_t max_connections = 0;  // concurrent connections per client; 0 = no limit
    std::optional<RateLimit> rate;      // new connections per client; nullopt = no limit
    std::size_t capacity = 65536;       // tracked clients, all shards together
  };

  enum class Verdict : std::uint8_t { accepted, connection_limit, rate_limit };

  // Holds one counted connection of a client; destroying it (the connection closed) releases
  // the count. Keeps the ClientLimits alive. Empty (nothing to release) when there is no
  // connection limit, when the connection was refused, or when it was admitted untracked.
  class Ticket {
   public:
    Ticket() = default;
    Ticket(Ticket&& other) noexcept = default;
    Ticket& operator=(Ticket&& other) noexcept;
    Ticket(const Ticket&) = delete;
    Ticket& operator=(const Ticket&) = delete;
    ~Ticket() { release(); }
    void release();
    bool holds() const { return owner_ != nullptr; }

   private:
    friend class ClientLimits;
    Ticket(std::shared_ptr<ClientLimits> owner, std::uint32_t shard, std::uint32_t slot)
        : owner_(std::move(owner)), shard_(shard), slot_(slot) {}
    std::shared_ptr<ClientLimits> owner_;
    std::uint32_t shard_ = 0;
    std::uint32_t slot_ = 0;
  };

  struct Admission {
    Verdict verdict = Verdict::accepted;
    Ticket ticket;  // accepted with a connection limit: hold it while the connection is open
  };

  static std::shared_ptr<ClientLimits> create(const Options& options);

  // Decides on a new connection from `client` at `now`. A refused connection changes nothing
  // (no token spent, no count); an accepted one spends a token and, with a connection limit,
  // is counted until its ticket is released. The connection limit is checked first.
  Admission admit(const boost::asio::ip::address& client, Clock::time_point now);

  // Reclaims every quiet entry (for a periodic sweep; admit() also reclaims a few each call).
  void reclaim(Clock::time_point now);

  std::size_t tracked() const;       // clients tracked now
  std::size_t slots() const;         // entries allocated (<= capacity(): the memory bound)
  std::size_t capacity() const { return per_shard_ * kShards; }
  std::uint64_t untracked() const;   // admissions made untracked because a shard was full

 private:
  explicit ClientLimits(const Options& options);

  struct Key {
    std::uint64_t high = 0, low = 0;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    std::size_t operator()(const Key& k) const noexcept;
  };
  static constexpr std::uint32_t kNone = UINT32_MAX;
  struct Entry {
    Key key;
    std::uint32_t active = 0;     // open connections
    std::int64_t tat = 0;         // GCRA theoretical arrival time, ns on Clock
    std::uint32_t prev = kNone;   // idle list links (entries with no connection open)
    std::uint32_t next = kNone;
  };
  struct Shard {
    mutable std::mutex mutex;
    std::unordered_map<Key, std::uint32_t, KeyHash> index;
    std::vector<Entry> entries;
    std::vector<std::uint32_t> free;
    std::uint32_t idle_head = kNone;  // least recently used idle entry
    std::uint32_t idle_tail = kNone;
    std::uint64_t untracked = 0;
  };

  static Key key_of(const boost::asio::ip::address& client);
  bool quiet(const Entry& e, std::int64_t now) const;
  void unlink_idle(Shard& s, std::uint32_t slot);
  void push_idle(Shard& s, std::uint32_t slot);
  void erase(Shard& s, std::uint32_t slot);
  void release(std::uint32_t shard, std::uint32_t slot);

  std::uint32_t max_connections_;
  bool rate_limited_;
  std::int64_t interval_ns_ = 0;   // period / N: one token
  std::int64_t tolerance_ns_ = 0;  // period - interval: the burst
  std::size_t per_shard_;
  std::array<Shard, kShards> shards_;
};

}  // namespace pb::net
