#pragma once

// The block list set at run time (`pbadmin block ADDR|CIDR [--for D] [--listener L]`): networks
// whose new connections every listener (or one) refuses, with an optional end. The control
// thread owns the entries and publishes them as an immutable BlockSet; every worker reads the
// current set through the shared BlockList (BlockCheck in guards.hpp, a client phase that a
// listener has only while some block applies to it). Pure code, no sockets.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/ip/address.hpp>

#include "protobalance/net/address_filter.hpp"

namespace pb::net {

using BlockClock = std::chrono::system_clock;

// One block: new connections from `network` to `listener` (empty: every listener) are refused
// from `created` until `expires` (none: until unblocked).
struct Block {
  config::Network network;
  std::string listener;
  BlockClock::time_point created;
  std::optional<BlockClock::time_point> expires;

  bool expired(BlockClock::time_point now) const { return expires && *expires <= now; }
  // True when the block covers `client` connecting to `listener` (expiry aside).
  bool covers(const boost::asio::ip::address& client, std::string_view to_listener) const;
  bool operator==(const Block&) const = default;
};

// The canonical text of a block's network: an address alone for a whole address ("192.0.2.7",
// "2001:db8::1"), else ADDR/LEN ("192.0.2.0/24", "2001:db8::/32"). IPv4 networks written as
// IPv4-mapped IPv6 keep that form.
std::string network_text(const config::Network& network);

// The blocks in force at one moment: immutable, shared by every worker. A lookup costs what a
// CidrSet lookup costs (one hash probe per distinct prefix length) for the blocks of every
// listener, and one more for those of the connection's listener.
class BlockSet {
 public:
  BlockSet() = default;
  explicit BlockSet(std::vector<Block> blocks);

  bool empty() const { return blocks_.empty(); }
  const std::vector<Block>& entries() const { return blocks_; }
  // True when some block (expired or not) applies to `listener`: it then needs the check.
  bool applies_to(std::string_view listener) const;
  // True when a block that has not expired at `now` covers `client` on `listener`. An IPv4-mapped
  // IPv6 client is the IPv4 address.
  bool blocks(const boost::asio::ip::address& client, std::string_view listener,
              BlockClock::time_point now) const;
  // The earliest end among the blocks; nullopt when none ends.
  std::optional<BlockClock::time_point> next_expiry() const;

 private:
  std::vector<Block> blocks_;
  CidrSet everywhere_;  // blocks of every listener
  std::map<std::string, CidrSet, std::less<>> by_listener_;
  BlockClock::time_point first_expiry_ = BlockClock::time_point::max();
};

// The block list shared by all listeners and workers: the current BlockSet, replaced whole by
// the control thread and read on the accept path without a lock of ours.
class BlockList {
 public:
  BlockList();
  // The set published last (any thread).
  std::shared_ptr<const BlockSet> current() const {
    return current_.load(std::memory_order_acquire);
  }
  // The same, for the accept path: a copy kept per thread and taken again only after a publish,
  // so a check costs one atomic load and the workers do not contend on the set's reference
  // count. Valid until this thread's next call; a thread keeps the set it saw last until then.
  const BlockSet& current_here() const;
  void publish(std::shared_ptr<const BlockSet> set);
  // A number that changes with every publish (any thread; one atomic load). Compared with an
  // earlier reading, it tells whether the set may have changed since.
  std::uint64_t version() const { return version_.load(std::memory_order_acquire); }

 private:
  std::atomic<std::shared_ptr<const BlockSet>> current_;
  // Of the set published last; unique across every list of the process, so that one per-thread
  // copy serves any list.
  std::atomic<std::uint64_t> version_;
};

}  // namespace pb::net
