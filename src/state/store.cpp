#include "protobalance/state/store.hpp"

#include <utility>

namespace pb::state {

Store::Store(std::filesystem::path state_dir, StoreOptions options)
    : db_(std::move(state_dir), DatabaseOptions{.busy_timeout = options.busy_timeout,
                                                .retry_interval = options.retry_interval}),
      affinity_(db_, AffinityTableOptions{.expiry_chunk = options.expiry_chunk,
                                          .expiry_steps = options.expiry_steps}) {
  {
    std::lock_guard db_lock(db_.mutex());
    db_.ensure_open(/*refuse_newer=*/true);
  }
  writer_ = std::make_unique<WriteBehind>(
      db_,
      WriteBehindOptions{.flush_interval = options.flush_interval,
                         .batch_threshold = options.batch_threshold,
                         .retry_interval = options.retry_interval,
                         .max_queue = options.max_queue,
                         .max_transaction = options.max_transaction,
                         .maintenance_interval = options.expiry_interval},
      [this] {
        if (auto table = ttls()) affinity_.delete_expired(*table);
      });
}

Store::~Store() = default;

void Store::put_affinity(affinity::AffinityRow row) {
  enqueue(PutAffinity{std::move(row)});
}

void Store::erase_affinity(std::string cluster, std::string client) {
  enqueue(EraseAffinity{std::move(cluster), std::move(client)});
}

std::optional<affinity::StoredEntry> Store::find_affinity(std::string_view cluster,
                                                          const affinity::ClientKey& key,
                                                          std::chrono::microseconds budget) {
  return affinity_.find(cluster, key, budget);
}

std::map<std::string, std::size_t, std::less<>> Store::count_affinity() {
  return affinity_.count();
}

std::size_t Store::for_each_affinity(
    const std::function<bool(const affinity::AffinityRowView&)>& fn, std::size_t* skipped) {
  return affinity_.for_each(ttls(), fn, skipped);
}

void Store::set_ttls(affinity::TtlTable ttls) {
  std::lock_guard lock(ttl_mutex_);
  ttls_ = std::move(ttls);
}

std::optional<affinity::TtlTable> Store::ttls() const {
  std::lock_guard lock(ttl_mutex_);
  return ttls_;
}

std::vector<affinity::AffinityRow> Store::load_affinity() {
  {
    // All at once here (tests, tools): the background load only skips expired rows.
    std::lock_guard db_lock(db_.mutex());
    if (db_.ensure_open()) {
      if (auto table = ttls()) affinity_.delete_expired(*table, /*all=*/true);
    }
  }
  std::vector<affinity::AffinityRow> rows;
  for_each_affinity([&](const affinity::AffinityRowView& r) {
    rows.push_back(affinity::AffinityRow{std::string(r.cluster), r.key.to_string(),
                                         std::string(r.node), r.first_seen, r.last_seen,
                                         r.connections});
    return true;
  });
  return rows;
}

template <class Result, class Read>
Result Store::read_rows(Read read) {
  std::lock_guard db_lock(db_.mutex());
  if (!db_.ensure_open()) return {};
  try {
    return read(db_.connection());
  } catch (const std::exception& e) {
    db_.handle_error("cannot read", e);
    return {};
  }
}

std::vector<NodeStateRow> Store::load_node_states() {
  return read_rows<std::vector<NodeStateRow>>(NodeStateTable::load);
}

std::map<std::string, std::string> Store::load_routes() {
  return read_rows<std::map<std::string, std::string>>(RouteTable::load);
}

std::vector<BlockRow> Store::load_blocks() {
  return read_rows<std::vector<BlockRow>>(BlockTable::load);
}

}  // namespace pb::state
