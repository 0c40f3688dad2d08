#include "protobalance/net/block_list.hpp"

#include <algorithm>

namespace pb::net {

namespace ip = boost::asio::ip;

bool Block::covers(const ip::address& client, std::string_view to_listener) const {
  return (listener.empty() || listener == to_listener) && network.contains(client);
}

std::string network_text(const config::Network& network) {
  if (network.prefix != 128) return network.to_string();
  const ip::address_v6 address(network.network);
  if (network.v4) return ip::make_address_v4(ip::v4_mapped, address).to_string();
  return address.to_string();
}

BlockSet::BlockSet(std::vector<Block> blocks) : blocks_(std::move(blocks)) {
  for (const Block& block : blocks_) {
    if (block.listener.empty()) {
      everywhere_.insert(block.network);
    } else {
      by_listener_[block.listener].insert(block.network);
    }
    if (block.expires) first_expiry_ = std::min(first_expiry_, *block.expires);
  }
}

bool BlockSet::applies_to(std::string_view listener) const {
  return !everywhere_.empty() || by_listener_.find(listener) != by_listener_.end();
}

bool BlockSet::blocks(const ip::address& client, std::string_view listener,
                      BlockClock::time_point now) const {
  bool hit = everywhere_.contains(client);
  if (!hit && !by_listener_.empty()) {
    const auto it = by_listener_.find(listener);
    hit = it != by_listener_.end() && it->second.contains(client);
  }
  if (!hit) return false;
  if (now < first_expiry_) return true;
  // Some block has ended and the control thread has not taken it out yet: only one that is
  // still in force counts.
  return std::any_of(blocks_.begin(), blocks_.end(), [&](const Block& block) {
    return !block.expired(now) && block.covers(client, listener);
  });
}

namespace {

std::atomic<std::uint64_t> next_version{1};

}  // namespace

BlockList::BlockList()
    : current_(std::make_shared<const BlockSet>()), version_(next_version.fetch_add(1)) {}

void BlockList::publish(std::shared_ptr<const BlockSet> set) {
  current_.store(std::move(set), std::memory_order_release);
  // After the set: a thread that sees the new version then loads this set (or a later one).
  version_.store(next_version.fetch_add(1), std::memory_order_release);
}

const BlockSet& BlockList::current_here() const {
  struct Copy {
    std::uint64_t version = 0;  // no list has version 0
    std::shared_ptr<const BlockSet> set;
  };
  thread_local Copy copy;
  const std::uint64_t version = version_.load(std::memory_order_acquire);
  if (copy.version != version) {
    copy.set = current_.load(std::memory_order_acquire);
    copy.version = version;
  }
  return *copy.set;
}

std::optional<BlockClock::time_point> BlockSet::next_expiry() const {
  if (first_expiry_ == BlockClock::time_point::max()) return std::nullopt;
  return first_expiry_;
}

}  // namespace pb::net
