#include "protobalance/affinity/affinity_map.hpp"

#include <spdlog/spdlog.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <limits>
#include <new>

namespace pb::affinity {
namespace {

// Tables grow past this fill ratio (by half): linear probing stays short, and a table is between
// 53% and 80% full.
constexpr double kMaxLoad = 0.8;
constexpr std::size_t kMinCapacity = 8;

std::int64_t unix_seconds(Clock::time_point t) {
  return std::chrono::floor<std::chrono::seconds>(t.time_since_epoch()).count();
}

// Unix seconds fit 32 bits until 2106; counts saturate.
std::uint32_t to_u32(std::int64_t value) {
  return static_cast<std::uint32_t>(
      std::clamp<std::int64_t>(value, 0, std::numeric_limits<std::uint32_t>::max()));
}

std::size_t capacity_for(std::size_t count) {
  return std::max(kMinCapacity,
                  static_cast<std::size_t>(static_cast<double>(count) / kMaxLoad) + 1);
}

}  // namespace

// ---- Table ----

AffinityMap::Table::~Table() {
  if (slots_ != nullptr) munmap(slots_, capacity_ * sizeof(Slot));
}

std::size_t AffinityMap::Table::home(std::size_t hash) const {
  return hash % capacity_;
}

AffinityMap::Slot* AffinityMap::Table::find(const ClientKey& key, std::size_t hash) {
  if (count_ == 0) return nullptr;
  const auto tag = static_cast<std::uint8_t>(key.prefix + 1);
  for (std::size_t i = home(hash);; i = i + 1 == capacity_ ? 0 : i + 1) {
    Slot& slot = slots_[i];
    if (slot.tag == 0) return nullptr;
    if (slot.tag == tag && slot.bytes == key.bytes) return &slot;
  }
}

AffinityMap::Slot& AffinityMap::Table::insert(const ClientKey& key, std::size_t hash) {
  if (static_cast<double>(count_ + 1) > static_cast<double>(capacity_) * kMaxLoad) {
    rehash(std::max(capacity_for(count_ + 1), capacity_ + capacity_ / 2));
  }
  const auto tag = static_cast<std::uint8_t>(key.prefix + 1);
  for (std::size_t i = home(hash);; i = i + 1 == capacity_ ? 0 : i + 1) {
    Slot& slot = slots_[i];
    if (slot.tag == 0) {
      // Left with tag 0: the caller sets it when it fills the slot in. Counted from now on.
      slot.bytes = key.bytes;
      ++count_;
      return slot;
    }
    if (slot.tag == tag && slot.bytes == key.bytes) return slot;
  }
}

void AffinityMap::Table::erase(Slot& erased) {
  // Backward shift: move later members of the probe run into the hole, so that no tombstone is
  // needed and look-ups stay short.
  std::size_t hole = static_cast<std::size_t>(&erased - slots_);
  std::size_t j = hole;
  for (;;) {
    j = j + 1 == capacity_ ? 0 : j + 1;
    Slot& next = slots_[j];
    if (next.tag == 0) break;
    const std::size_t k = home(ClientKeyHash{}(slot_key(next)));
    // `next` may move to the hole unless its home lies cyclically in (hole, j].
    const bool stays = hole <= j ? (hole < k && k <= j) : (hole < k || k <= j);
    if (stays) continue;
    slots_[hole] = next;
    hole = j;
  }
  std::memset(&slots_[hole], 0, sizeof(Slot));
  --count_;
}

void AffinityMap::Table::reserve(std::size_t count) {
  if (capacity_for(count) > capacity_) rehash(capacity_for(count));
}

void AffinityMap::Table::rehash(std::size_t capacity) {
  // Fresh anonymous pages: zero (every slot empty) and returned to the system by munmap.
  void* memory =
      mmap(nullptr, capacity * sizeof(Slot), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
           -1, 0);
  if (memory == MAP_FAILED) throw std::bad_alloc();
  Slot* old = slots_;
  const std::size_t old_capacity = capacity_;
  slots_ = static_cast<Slot*>(memory);
  capacity_ = capacity;
  for (std::size_t i = 0; i < old_capacity; ++i) {
    const Slot& slot = old[i];
    if (slot.tag == 0) continue;
    for (std::size_t j = home(ClientKeyHash{}(slot_key(slot)));;
         j = j + 1 == capacity_ ? 0 : j + 1) {
      if (slots_[j].tag == 0) {
        slots_[j] = slot;
        break;
      }
    }
  }
  if (old != nullptr) munmap(old, old_capacity * sizeof(Slot));
}

std::uint16_t AffinityMap::Table::node_index(std::string_view name) {
  for (std::size_t i = 0; i < nodes_.size(); ++i) {
    if (nodes_[i] == name) return static_cast<std::uint16_t>(i);
  }
  // Names are never removed (a table rarely sees more than a few dozen); past 65535 the last
  // index is reused rather than overflowing.
  if (nodes_.size() > std::numeric_limits<std::uint16_t>::max()) {
    nodes_.back() = std::string(name);
  } else {
    nodes_.emplace_back(name);
  }
  return static_cast<std::uint16_t>(nodes_.size() - 1);
}

// ---- AffinityMap ----

AffinityMap::AffinityMap(EntryStore* store, std::chrono::seconds last_seen_grain)
    : store_(store), grain_s_(last_seen_grain.count()) {}

AffinityMap::~AffinityMap() {
  stop_loading_.store(true, std::memory_order_relaxed);
  if (loader_.joinable()) loader_.join();
}

ClientKey AffinityMap::slot_key(const Slot& slot) {
  ClientKey key;
  key.bytes = slot.bytes;
  key.prefix = static_cast<std::uint8_t>(slot.tag - 1);
  return key;
}

AffinityMap::Shard& AffinityMap::shard_for(std::size_t hash) {
  // The top bits: the slots inside a table use the whole hash modulo the capacity.
  static_assert(kShards == 64);
  return shards_[hash >> (sizeof(std::size_t) * 8 - 6)];
}

AffinityMap::Table& AffinityMap::table_for(Shard& shard, std::string_view cluster) {
  auto c = shard.clusters.find(cluster);
  if (c == shard.clusters.end()) {
    c = shard.clusters.try_emplace(std::string(cluster)).first;
  }
  return c->second;
}

void AffinityMap::store_put(std::string_view cluster, const ClientKey& key, Table& table,
                            Slot& slot) {
  slot.stored_last_seen = slot.last_seen;
  if (store_ == nullptr) return;
  store_->put_affinity(AffinityRow{std::string(cluster), key.to_string(),
                                   table.node_name(slot.node), slot.first_seen, slot.last_seen,
                                   slot.connections});
}

void AffinityMap::store_erase(std::string_view cluster, const ClientKey& key) {
  if (store_ == nullptr) return;
  store_->erase_affinity(std::string(cluster), key.to_string());
}

std::optional<std::string> AffinityMap::lookup(std::string_view cluster, const ClientKey& key,
                                               Clock::time_point now, config::Duration ttl) {
  const std::size_t hash = ClientKeyHash{}(key);
  Shard& shard = shard_for(hash);
  const std::int64_t cutoff = expiry_cutoff(now, ttl);
  {
    std::lock_guard lock(shard.mutex);
    if (const auto c = shard.clusters.find(cluster); c != shard.clusters.end()) {
      if (Slot* slot = c->second.find(key, hash)) {
        if (slot->last_seen < cutoff) {
          c->second.erase(*slot);
          size_.fetch_sub(1, std::memory_order_relaxed);
          store_erase(cluster, key);
          return std::nullopt;
        }
        return c->second.node_name(slot->node);
      }
    }
    if (!loading()) return std::nullopt;
  }
  // Still loading: the entry may be in the database only. Asked without the shard's lock.
  const auto stored = store_->find_affinity(cluster, key, kStoreLookupBudget);
  if (!stored || stored->last_seen < cutoff) return std::nullopt;
  add_loaded(cluster, key, stored->node, stored->first_seen, stored->last_seen,
             stored->connections);
  // What the map holds now: this row, or what a worker recorded meanwhile.
  std::lock_guard lock(shard.mutex);
  if (const auto c = shard.clusters.find(cluster); c != shard.clusters.end()) {
    if (Slot* slot = c->second.find(key, hash)) return c->second.node_name(slot->node);
  }
  return std::nullopt;
}

std::pair<AffinityMap::Slot&, bool> AffinityMap::find_or_add(Shard& shard,
                                                             std::string_view cluster,
                                                             const ClientKey& key,
                                                             std::size_t hash) {
  Table& table = table_for(shard, cluster);
  Slot& slot = table.insert(key, hash);
  const bool inserted = slot.tag == 0;
  if (inserted) {
    slot.tag = static_cast<std::uint8_t>(key.prefix + 1);
    size_.fetch_add(1, std::memory_order_relaxed);
  }
  return {slot, inserted};
}

void AffinityMap::record(std::string_view cluster, const ClientKey& key, std::string_view node,
                         Clock::time_point now) {
  const std::uint32_t t = to_u32(unix_seconds(now));
  const std::size_t hash = ClientKeyHash{}(key);
  Shard& shard = shard_for(hash);
  bool moved = false;
  {
    std::lock_guard lock(shard.mutex);
    Table& table = table_for(shard, cluster);
    auto [slot, inserted] = find_or_add(shard, cluster, key, hash);
    if (inserted) {
      slot.node = table.node_index(node);
      slot.first_seen = t;
      slot.last_seen = t;
      slot.connections = 1;
      store_put(cluster, key, table, slot);
    } else {
      if (slot.connections != std::numeric_limits<std::uint32_t>::max()) slot.connections += 1;
      slot.last_seen = std::max(slot.last_seen, t);
      if (table.node_name(slot.node) != node) {
        slot.node = table.node_index(node);
        store_put(cluster, key, table, slot);
        moved = true;
      } else {
        if (static_cast<std::int64_t>(slot.last_seen) - slot.stored_last_seen >= grain_s_) {
          store_put(cluster, key, table, slot);
        }
        return;  // nothing a twin needs to know
      }
    }
  }
  // A new or moved entry: a decision the twins share. Told outside the shard's lock.
  if (AffinityObserver* observer = observer_.load(std::memory_order_acquire)) {
    observer->decided(cluster, key, node, now, moved);
  }
}

void AffinityMap::pin(std::string_view cluster, const ClientKey& key, std::string_view node,
                      Clock::time_point now, Source source) {
  const std::uint32_t t = to_u32(unix_seconds(now));
  const std::size_t hash = ClientKeyHash{}(key);
  Shard& shard = shard_for(hash);
  {
    std::lock_guard lock(shard.mutex);
    Table& table = table_for(shard, cluster);
    auto [slot, inserted] = find_or_add(shard, cluster, key, hash);
    if (inserted) slot.first_seen = t;
    slot.node = table.node_index(node);
    // A pin counts as use: the entry lives a full TTL from now even if the client is quiet.
    slot.last_seen = std::max(slot.last_seen, t);
    store_put(cluster, key, table, slot);
  }
  if (source == Source::twin) return;
  if (AffinityObserver* observer = observer_.load(std::memory_order_acquire)) {
    observer->pinned(cluster, key, node, now);
  }
}

bool AffinityMap::forget(std::string_view cluster, const ClientKey& key, Source source) {
  if (loading()) {
    std::lock_guard lock(forgotten_mutex_);
    forgotten_.emplace_back(std::string(cluster), key);
    any_forgotten_.store(true, std::memory_order_release);
  }
  const std::size_t hash = ClientKeyHash{}(key);
  Shard& shard = shard_for(hash);
  bool found = false;
  {
    std::lock_guard lock(shard.mutex);
    if (const auto c = shard.clusters.find(cluster); c != shard.clusters.end()) {
      if (Slot* slot = c->second.find(key, hash)) {
        c->second.erase(*slot);
        size_.fetch_sub(1, std::memory_order_relaxed);
        found = true;
      }
    }
    store_erase(cluster, key);
  }
  if (source == Source::local) {
    if (AffinityObserver* observer = observer_.load(std::memory_order_acquire)) {
      observer->forgotten(cluster, key);
    }
  }
  return found;
}

std::size_t AffinityMap::sweep(Clock::time_point now, const TtlTable& ttls) {
  std::size_t erased = 0;
  for (Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    for (auto& [cluster, table] : shard.clusters) {
      const std::int64_t cutoff = expiry_cutoff(now, ttls.ttl_for(cluster));
      Slot* slots = table.slots();
      for (std::size_t i = 0; i < table.capacity();) {
        Slot& slot = slots[i];
        if (slot.tag != 0 && slot.last_seen < cutoff) {
          // The store deletes expired rows by itself too; telling it keeps the two in step even
          // if its TTLs differ from the caller's.
          store_erase(cluster, slot_key(slot));
          table.erase(slot);  // shifts a later entry into slot i: look at it again
          ++erased;
        } else {
          ++i;
        }
      }
    }
  }
  size_.fetch_sub(erased, std::memory_order_relaxed);
  return erased;
}

bool AffinityMap::add_loaded(std::string_view cluster, const ClientKey& key, std::string_view node,
                             std::int64_t first_seen, std::int64_t last_seen,
                             std::int64_t connections) {
  if (any_forgotten_.load(std::memory_order_acquire)) {
    std::lock_guard lock(forgotten_mutex_);
    for (const auto& [c, k] : forgotten_) {
      if (c == cluster && k == key) return false;
    }
  }
  const std::size_t hash = ClientKeyHash{}(key);
  Shard& shard = shard_for(hash);
  std::lock_guard lock(shard.mutex);
  Table& table = table_for(shard, cluster);
  auto [slot, inserted] = find_or_add(shard, cluster, key, hash);
  if (!inserted) return false;
  slot.node = table.node_index(node);
  slot.first_seen = to_u32(first_seen);
  slot.last_seen = to_u32(last_seen);
  slot.stored_last_seen = slot.last_seen;
  slot.connections = to_u32(connections);
  return true;
}

std::size_t AffinityMap::load(const std::vector<AffinityRow>& rows) {
  std::size_t loaded = 0;
  std::size_t skipped = 0;
  for (const AffinityRow& row : rows) {
    const auto key = parse_client(row.client);
    if (!key) {
      ++skipped;
      continue;
    }
    if (add_loaded(row.cluster, *key, row.node, row.first_seen, row.last_seen, row.connections)) {
      ++loaded;
    }
  }
  if (skipped > 0) {
    spdlog::warn("affinity: skipped {} stored entries whose client is not an address", skipped);
  }
  return loaded;
}

void AffinityMap::load_in_background(std::function<void()> hold) {
  if (store_ == nullptr || loader_.joinable()) return;
  loading_.store(true, std::memory_order_release);
  loader_ = std::thread([this, hold = std::move(hold)] { run_load(hold); });
}

void AffinityMap::run_load(const std::function<void()>& hold) {
  const auto started = std::chrono::steady_clock::now();
  if (hold) hold();
  std::size_t loaded = 0;
  std::size_t skipped = 0;
  if (!stop_loading_.load(std::memory_order_relaxed)) {
    // Size every table for its share of the rows first: no growth while loading, and a loaded
    // map is about 80% full.
    for (const auto& [cluster, count] : store_->count_affinity()) {
      const std::size_t per_shard = count / kShards + count / kShards / 32 + 16;
      for (Shard& shard : shards_) {
        std::lock_guard lock(shard.mutex);
        table_for(shard, cluster).reserve(per_shard);
      }
    }
    store_->for_each_affinity(
        [&](const AffinityRowView& row) {
          if (stop_loading_.load(std::memory_order_relaxed)) return false;
          // Counted also when the map already has the client (a look-up fetched it, or it
          // connected meanwhile): the log reports the entries the database held.
          add_loaded(row.cluster, row.key, row.node, row.first_seen, row.last_seen,
                     row.connections);
          ++loaded;
          return true;
        },
        &skipped);
  }
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - started);
  if (skipped > 0) {
    spdlog::warn("affinity: skipped {} stored entries whose client is not an address", skipped);
  }
  spdlog::info("affinity: {} entr{} loaded from {} in {} ms ({} in the map)", loaded,
               loaded == 1 ? "y" : "ies", store_->location(), took.count(), size());
  {
    std::lock_guard lock(forgotten_mutex_);
    forgotten_.clear();
    forgotten_.shrink_to_fit();
  }
  {
    std::lock_guard lock(loaded_mutex_);
    loading_.store(false, std::memory_order_release);
  }
  loaded_.notify_all();
}

bool AffinityMap::wait_loaded(std::chrono::milliseconds timeout) const {
  std::unique_lock lock(loaded_mutex_);
  return loaded_.wait_for(lock, timeout, [&] { return !loading(); });
}

std::vector<AffinityRow> AffinityMap::snapshot() const {
  std::vector<AffinityRow> rows;
  rows.reserve(size());
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    for (const auto& [cluster, table] : shard.clusters) {
      const Slot* slots = table.slots();
      for (std::size_t i = 0; i < table.capacity(); ++i) {
        const Slot& slot = slots[i];
        if (slot.tag == 0) continue;
        rows.push_back(AffinityRow{cluster, slot_key(slot).to_string(), table.node_name(slot.node),
                                   slot.first_seen, slot.last_seen, slot.connections});
      }
    }
  }
  return rows;
}

std::vector<AffinityRow> AffinityMap::overlapping(std::string_view cluster,
                                                  const ClientKey& key) const {
  std::vector<AffinityRow> rows;
  for (const Shard& shard : shards_) {
    std::lock_guard lock(shard.mutex);
    const auto c = shard.clusters.find(cluster);
    if (c == shard.clusters.end()) continue;
    const Table& table = c->second;
    const Slot* slots = table.slots();
    for (std::size_t i = 0; i < table.capacity(); ++i) {
      if (slots[i].tag == 0) continue;
      const ClientKey entry = slot_key(slots[i]);
      if (!entry.overlaps(key)) continue;
      rows.push_back(AffinityRow{c->first, entry.to_string(), table.node_name(slots[i].node),
                                 slots[i].first_seen, slots[i].last_seen, slots[i].connections});
    }
  }
  return rows;
}

std::function<void()> load_hold_from_environment() {
  const char* file = std::getenv("PB_TEST_AFFINITY_LOAD_HOLD");
  if (file == nullptr || *file == '\0') return {};
  return [path = std::filesystem::path(file)] {
    spdlog::warn("affinity: loading held while {} exists (PB_TEST_AFFINITY_LOAD_HOLD)",
                 path.string());
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    std::error_code ec;
    while (std::filesystem::exists(path, ec) && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  };
}

}  // namespace pb::affinity
