#include "protobalance/net/client_limits.hpp"

#include <algorithm>

#include "protobalance/config/duration.hpp"

namespace pb::net {
namespace {

namespace ip = boost::asio::ip;

constexpr std::uint32_t kMaxRateConnections = 1'000'000;
constexpr std::chrono::milliseconds kMaxRatePeriod = std::chrono::hours(24);
// Quiet entries reclaimed from the idle list's head per admit(): amortises the sweep.
constexpr int kReclaimPerAdmit = 2;

std::uint64_t load_be64(const ip::address_v6::bytes_type& b, std::size_t at) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < 8; ++i) v = (v << 8) | b[at + i];
  return v;
}

std::int64_t ns_of(ClientLimits::Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

}  // namespace

RateLimitResult parse_rate_limit(std::string_view text) {
  const auto bad = [&] {
    return RateLimitResult{std::nullopt,
                           "bad rate \"" + std::string(text) +
                               "\": expected CONNECTIONS/PERIOD, e.g. \"20/1s\" or \"300/1m\" "
                               "(1 to 1000000 connections, a period from 1ms to 1d)"};
  };
  const auto slash = text.find('/');
  if (slash == std::string_view::npos) return bad();
  const std::string_view count = text.substr(0, slash);
  if (count.empty() || count.size() > 7 || count[0] == '0' ||
      count.find_first_not_of("0123456789") != std::string_view::npos) {
    return bad();
  }
  std::uint32_t n = 0;
  for (char c : count) n = n * 10 + static_cast<std::uint32_t>(c - '0');
  const auto period = config::parse_duration(text.substr(slash + 1));
  if (n > kMaxRateConnections || !period || period->count() <= 0 || *period > kMaxRatePeriod) {
    return bad();
  }
  return {RateLimit{n, *period}, {}};
}

// ---- Ticket ----------------------------------------------------------------------------------

ClientLimits::Ticket& ClientLimits::Ticket::operator=(Ticket&& other) noexcept {
  if (this != &other) {
    release();
    owner_ = std::move(other.owner_);
    shard_ = other.shard_;
    slot_ = other.slot_;
  }
  return *this;
}

void ClientLimits::Ticket::release() {
  if (owner_ == nullptr) return;
  owner_->release(shard_, slot_);
  owner_.reset();
}

// ---- ClientLimits ----------------------------------------------------------------------------

std::shared_ptr<ClientLimits> ClientLimits::create(const Options& options) {
  return std::shared_ptr<ClientLimits>(new ClientLimits(options));
}

ClientLimits::ClientLimits(const Options& options)
    : max_connections_(options.max_connections),
      rate_limited_(options.rate.has_value() && options.rate->connections > 0),
      per_shard_(std::max<std::size_t>(1, (options.capacity + kShards - 1) / kShards)) {
  if (rate_limited_) {
    const auto period_ns =
        std::chrono::duration_cast<std::chrono::nanoseconds>(options.rate->period).count();
    interval_ns_ = std::max<std::int64_t>(1, period_ns / options.rate->connections);
    tolerance_ns_ = interval_ns_ * (options.rate->connections - 1);
  }
}

std::size_t ClientLimits::KeyHash::operator()(const Key& k) const noexcept {
  std::uint64_t x = k.high * 0x9E3779B97F4A7C15ull ^ (k.low + 0xBF58476D1CE4E5B9ull);
  x ^= x >> 31;
  x *= 0x94D049BB133111EBull;
  x ^= x >> 29;
  return static_cast<std::size_t>(x);
}

ClientLimits::Key ClientLimits::key_of(const ip::address& client) {
  if (client.is_v4()) {
    return {0, 0x0000FFFF00000000ull | client.to_v4().to_uint()};
  }
  const auto v6 = client.to_v6();
  const auto bytes = v6.to_bytes();
  if (v6.is_v4_mapped()) return {load_be64(bytes, 0), load_be64(bytes, 8)};
  return {load_be64(bytes, 0), 0};  // the /64
}

bool ClientLimits::quiet(const Entry& e, std::int64_t now) const {
  return e.active == 0 && (!rate_limited_ || e.tat <= now);
}

void ClientLimits::unlink_idle(Shard& s, std::uint32_t slot) {
  Entry& e = s.entries[slot];
  if (e.prev != kNone) s.entries[e.prev].next = e.next; else s.idle_head = e.next;
  if (e.next != kNone) s.entries[e.next].prev = e.prev; else s.idle_tail = e.prev;
  e.prev = e.next = kNone;
}

void ClientLimits::push_idle(Shard& s, std::uint32_t slot) {
  Entry& e = s.entries[slot];
  e.prev = s.idle_tail;
  e.next = kNone;
  if (s.idle_tail != kNone) s.entries[s.idle_tail].next = slot; else s.idle_head = slot;
  s.idle_tail = slot;
}

// Removes an idle entry (it must be on the idle list).
void ClientLimits::erase(Shard& s, std::uint32_t slot) {
  unlink_idle(s, slot);
  Entry& e = s.entries[slot];
  s.index.erase(e.key);
  e = Entry{};
  s.free.push_back(slot);
}

ClientLimits::Admission ClientLimits::admit(const ip::address& client, Clock::time_point now) {
  if (max_connections_ == 0 && !rate_limited_) return {};
  const Key key = key_of(client);
  const std::size_t hash = KeyHash{}(key);
  const auto shard_index = static_cast<std::uint32_t>((hash >> 32) % kShards);
  Shard& s = shards_[shard_index];
  const std::int64_t t = ns_of(now);

  std::unique_lock lock(s.mutex);
  for (int i = 0; i < kReclaimPerAdmit && s.idle_head != kNone; ++i) {
    if (!quiet(s.entries[s.idle_head], t)) break;
    erase(s, s.idle_head);
  }

  std::uint32_t slot;
  if (const auto it = s.index.find(key); it != s.index.end()) {
    slot = it->second;
  } else {
    if (s.index.size() >= per_shard_) {
      if (s.idle_head == kNone) {
        ++s.untracked;  // every entry holds connections: fail open
        return {};
      }
      erase(s, s.idle_head);  // least recently used, its rate history forgotten
    }
    if (!s.free.empty()) {
      slot = s.free.back();
      s.free.pop_back();
    } else {
      slot = static_cast<std::uint32_t>(s.entries.size());
      s.entries.emplace_back();
    }
    Entry& fresh = s.entries[slot];
    fresh.key = key;
    fresh.tat = t;
    s.index.emplace(key, slot);
    push_idle(s, slot);
  }

  Entry& e = s.entries[slot];
  Verdict verdict = Verdict::accepted;
  const std::int64_t tat = std::max(e.tat, t);
  if (max_connections_ != 0 && e.active >= max_connections_) {
    verdict = Verdict::connection_limit;
  } else if (rate_limited_ && tat - t > tolerance_ns_) {
    verdict = Verdict::rate_limit;
  }
  if (verdict != Verdict::accepted) {
    if (e.active == 0) {  // touched: most recently used
      unlink_idle(s, slot);
      push_idle(s, slot);
    }
    return {verdict, {}};
  }

  if (rate_limited_) e.tat = tat + interval_ns_;
  if (max_connections_ == 0) {
    unlink_idle(s, slot);
    push_idle(s, slot);
    return {};
  }
  if (e.active++ == 0) unlink_idle(s, slot);
  lock.unlock();
  return {Verdict::accepted, Ticket(shared_from_this(), shard_index, slot)};
}

void ClientLimits::release(std::uint32_t shard, std::uint32_t slot) {
  Shard& s = shards_[shard];
  std::lock_guard lock(s.mutex);
  Entry& e = s.entries[slot];
  if (--e.active != 0) return;
  push_idle(s, slot);
  // Without a rate limit an idle entry carries nothing worth keeping.
  if (!rate_limited_) erase(s, slot);
}

void ClientLimits::reclaim(Clock::time_point now) {
  const std::int64_t t = ns_of(now);
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mutex);
    // The idle list is in order of last use, not of bucket refill: walk all of it.
    for (std::uint32_t slot = s.idle_head; slot != kNone;) {
      const std::uint32_t next = s.entries[slot].next;
      if (quiet(s.entries[slot], t)) erase(s, slot);
      slot = next;
    }
  }
}

std::size_t ClientLimits::tracked() const {
  std::size_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard lock(s.mutex);
    n += s.index.size();
  }
  return n;
}

std::size_t ClientLimits::slots() const {
  std::size_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard lock(s.mutex);
    n += s.entries.size();
  }
  return n;
}

std::uint64_t ClientLimits::untracked() const {
  std::uint64_t n = 0;
  for (const Shard& s : shards_) {
    std::lock_guard lock(s.mutex);
    n += s.untracked;
  }
  return n;
}

}  // namespace pb::net
