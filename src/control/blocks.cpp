#include <algorithm>
#include <chrono>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <boost/asio/post.hpp>
#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include "protobalance/config/utc_time.hpp"
#include "protobalance/control/runtime.hpp"
#include "protobalance/control/twins.hpp"
#include "protobalance/net/connection.hpp"

namespace pb::control {

namespace asio = boost::asio;

// The block list: the entries an operator (or, later, a twin) set, kept in the database, published
// to the workers as an immutable net::BlockSet that BlockCheck reads on the accept path.

namespace {

std::int64_t unix_seconds(net::BlockClock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count();
}

net::BlockClock::time_point from_unix(std::int64_t seconds) {
  return net::BlockClock::time_point(std::chrono::seconds(seconds));
}

state::BlockRow row_of(const net::Block& block) {
  return state::BlockRow{net::network_text(block.network), block.listener,
                         unix_seconds(block.created),
                         block.expires ? unix_seconds(*block.expires) : 0};
}

// "192.0.2.0/24 on every listener until 2026-12-07T01:02:03Z" for the log.
std::string describe(const net::Block& block) {
  const std::string where = block.listener.empty() ? std::string("every listener")
                                                   : fmt::format("listener {}", block.listener);
  const std::string until =
      block.expires ? config::format_utc(unix_seconds(*block.expires)) : std::string("unblocked");
  return fmt::format("{} on {} until {}", net::network_text(block.network), where, until);
}

bool same_subject(const net::Block& a, const net::Block& b) {
  return a.network == b.network && a.listener == b.listener;
}

// The twins' name of a block (twin_link.hpp): NETWORK, or NETWORK@LISTENER for one listener.
std::string twin_subject(const config::Network& network, const std::string& listener) {
  std::string subject = net::network_text(network);
  if (!listener.empty()) {
    subject += '@';
    subject += listener;
  }
  return subject;
}

// The network and listener of a twin's subject; nullopt when the network does not parse.
std::optional<std::pair<config::Network, std::string>> parse_twin_subject(
    const std::string& subject) {
  const auto at = subject.find('@');
  const auto parsed = config::parse_network(subject.substr(0, at));
  if (!parsed.network) return std::nullopt;
  return std::pair{*parsed.network,
                   at == std::string::npos ? std::string() : subject.substr(at + 1)};
}

}  // namespace

// Loads the blocks saved by an earlier run; ones that ended meanwhile (or that this release
// cannot read) are deleted.
void Runtime::restore_blocks() {
  if (!store_) return;
  const std::int64_t now = unix_seconds(net::BlockClock::now());
  for (const auto& row : store_->load_blocks()) {
    const auto parsed = config::parse_network(row.network);
    if (!parsed.network || row.expired(now)) {
      store_->enqueue(state::EraseBlock{row.network, row.listener});
      continue;
    }
    net::Block block{*parsed.network, row.listener, from_unix(row.created),
                     row.expires != 0 ? std::optional(from_unix(row.expires)) : std::nullopt};
    spdlog::info("block of {} (set at run time, kept across the restart)", describe(block));
    blocks_.push_back(std::move(block));
  }
  std::stable_sort(blocks_.begin(), blocks_.end(),
                   [](const net::Block& a, const net::Block& b) { return a.created < b.created; });
  apply_blocks();
}

// Publishes blocks_ to the workers. A listener that needs the check now and did not before (or
// the other way round) gets new routes, with or without BlockCheck: a listener no block applies
// to pays nothing.
void Runtime::apply_blocks() {
  const auto previous = block_list_->current();
  const auto next = std::make_shared<const net::BlockSet>(blocks_);
  block_list_->publish(next);
  const auto snap = snapshot();
  for (const auto& [name, group] : listeners_) {
    if (previous->applies_to(name) != next->applies_to(name)) route_group(group, *snap);
  }
  schedule_block_expiry();
}

void Runtime::schedule_block_expiry() {
  const auto next = block_list_->current()->next_expiry();
  if (!next) {
    block_expiry_timer_.cancel();
    return;
  }
  block_expiry_timer_.expires_at(*next);  // cancels the wait for an earlier schedule
  block_expiry_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;
    const auto now = net::BlockClock::now();
    const auto ended = std::stable_partition(blocks_.begin(), blocks_.end(),
                                             [&](const net::Block& b) { return !b.expired(now); });
    for (auto it = ended; it != blocks_.end(); ++it) {
      spdlog::info("block of {} ended", describe(*it));
      if (store_) {
        store_->enqueue(state::EraseBlock{net::network_text(it->network), it->listener});
      }
    }
    blocks_.erase(ended, blocks_.end());
    apply_blocks();
  });
}

// Closes the running connections of clients the current block list covers, on each worker's
// own thread (a block lifted before a worker gets to it closes nothing there).
void Runtime::close_blocked_sessions(const net::Block& block) {
  for (auto& worker : workers_) {
    worker->post([w = worker.get(), list = block_list_, block] {
      const auto now = net::BlockClock::now();
      const auto current = list->current();
      const std::size_t closed = w->close_connections([&](const net::Connection& c) {
        return block.covers(c.client().address(), c.listener()) &&
               current->blocks(c.client().address(), c.listener(), now);
      });
      if (closed > 0) {
        spdlog::info("block of {}: closed {} running connection{}", describe(block), closed,
                     closed == 1 ? "" : "s");
      }
    });
  }
}

std::string Runtime::block(const net::Block& block) { return change_block(block, true); }

std::vector<net::Block> Runtime::unblock(const config::Network& network,
                                         const std::optional<std::string>& listener) {
  return lift_blocks(network, listener, true);
}

std::string Runtime::change_block(const net::Block& block, bool share) {
  if (!block.listener.empty() && !listeners_.contains(block.listener)) {
    return fmt::format("no listener named {}", block.listener);
  }
  const auto it = std::find_if(blocks_.begin(), blocks_.end(),
                               [&](const net::Block& b) { return same_subject(b, block); });
  if (it != blocks_.end()) {
    *it = block;
  } else {
    blocks_.push_back(block);
  }
  // Committed on the store's writer thread, never waited for here: a slow disk must not stall
  // the control thread (admin API, metrics, twins, expiry). The admin API answers once it is
  // committed (after_store), so that `pbadmin blocks`, which reads the file, lists it at once;
  // a twin's block takes effect once committed, for the same promise without an answer.
  if (store_) store_->enqueue(state::PutBlock{row_of(block)});
  spdlog::info("blocked {}{}", describe(block), share ? "" : " (set by a twin)");
  const auto take_effect = [this, block] {
    apply_blocks();
    close_blocked_sessions(block);
  };
  if (!share) {
    once_stored(take_effect);
    return {};
  }
  take_effect();
  const auto subject = twin_subject(block.network, block.listener);
  if (twins_) {
    twins_->publish_block(subject, block.expires.value_or(net::BlockClock::time_point{}));
    // Taken after the publication is queued: a re-read that begins earlier may not see it.
    shared_blocks_.insert_or_assign(subject, std::chrono::steady_clock::now());
  } else {
    shared_blocks_.erase(subject);
  }
  return {};
}

std::vector<net::Block> Runtime::lift_blocks(const config::Network& network,
                                             const std::optional<std::string>& listener,
                                             bool share) {
  const auto lifted =
      std::stable_partition(blocks_.begin(), blocks_.end(), [&](const net::Block& b) {
        return !(b.network == network && (!listener || b.listener == *listener));
      });
  std::vector<net::Block> removed(lifted, blocks_.end());
  blocks_.erase(lifted, blocks_.end());
  if (removed.empty()) return removed;
  for (const auto& block : removed) {
    spdlog::info("lifted the block of {}{}", describe(block), share ? "" : " (by a twin)");
    const auto subject = twin_subject(block.network, block.listener);
    shared_blocks_.erase(subject);
    if (share && twins_) twins_->publish_unblock(subject);
    if (store_) {
      store_->enqueue(state::EraseBlock{net::network_text(block.network), block.listener});
    }
  }
  if (share) {
    apply_blocks();
  } else {
    once_stored([this] { apply_blocks(); });  // as a twin's block (change_block)
  }
  return removed;
}

void Runtime::once_stored(std::function<void()> then) {
  if (!store_) {
    then();
    return;
  }
  store_->when_written([this, then = std::move(then)] {
    asio::post(control_, [this, then] {
      if (!stopping_) then();
    });
  });
}

std::uint64_t Runtime::blocks_in_force() const {
  const auto now = net::BlockClock::now();
  const auto& entries = block_list_->current()->entries();
  return static_cast<std::uint64_t>(std::count_if(
      entries.begin(), entries.end(), [&](const net::Block& b) { return !b.expired(now); }));
}

// A twin's block, or one found in Redis after a (re)connection: applied as the operator's would
// be, not published again. The same block already in force (the re-read delivers every stored
// one) changes nothing; one of a listener not configured here is ignored.
void Runtime::apply_twin_block(const std::string& subject,
                               std::chrono::system_clock::time_point until) {
  const auto parsed = parse_twin_subject(subject);
  if (!parsed) {
    spdlog::debug("twin: a block of '{}' is not a network; ignored", subject);
    return;
  }
  const auto now = net::BlockClock::now();
  net::Block block{parsed->first, parsed->second, now,
                   until == net::BlockClock::time_point{} ? std::nullopt : std::optional(until)};
  if (block.expired(now)) return;
  const auto it = std::find_if(blocks_.begin(), blocks_.end(),
                               [&](const net::Block& b) { return same_subject(b, block); });
  if (it == blocks_.end() || it->expires != block.expires) {
    const std::string error = change_block(block, false);
    if (!error.empty()) {
      spdlog::info("twin: a block set by a twin is not applied here: {}", error);
      return;
    }
  }
  shared_blocks_.insert_or_assign(subject, std::chrono::steady_clock::now());
}

void Runtime::apply_twin_unblock(const std::string& subject) {
  const auto parsed = parse_twin_subject(subject);
  if (!parsed) return;
  lift_blocks(parsed->first, parsed->second, false);
}

// An unblock leaves no record in Redis, so a twin that did not hear it (cut off from Redis, or
// unsubscribed) learns it here, by absence: a block held here, shared before the re-read began
// and no longer in Redis was lifted by a twin; it is lifted here too, not published again.
// Blocks made here while cut off are in Redis by then (the link sends the writes queued during
// the outage before it re-reads) and stay. When the comparison is not sound (Redis lost its
// data, or a write of ours may be lost: read.continuous false) nothing is lifted. When Redis
// lost its data (read.redis_lost_data), every block held here and missing from Redis is
// published again, as when it was made (a timed one with the time it has left; one that ended
// is not held any more), so that a twin started later finds it. Blocks found in Redis count as
// shared from now on (also ones restored from the database at start).
void Runtime::reconcile_twin_blocks(const state::BlocksRead& read) {
  const auto now = std::chrono::steady_clock::now();
  const auto clock_now = net::BlockClock::now();
  std::set<std::string, std::less<>> held;
  std::vector<net::Block> gone;
  std::size_t published = 0;
  for (const auto& block : blocks_) {
    auto subject = twin_subject(block.network, block.listener);
    if (read.subjects.contains(subject)) {
      shared_blocks_.try_emplace(subject, now);
    } else if (read.redis_lost_data) {
      if (twins_ && !block.expired(clock_now)) {
        twins_->publish_block(subject, block.expires.value_or(net::BlockClock::time_point{}));
        // Taken after the publication is queued, as in change_block: a re-read that begins
        // earlier (and so may not find it) does not count it as lifted.
        shared_blocks_.insert_or_assign(subject, std::chrono::steady_clock::now());
        ++published;
      }
    } else if (const auto shared = shared_blocks_.find(subject); read.continuous &&
                                                                 shared != shared_blocks_.end() &&
                                                                 shared->second < read.read_from) {
      gone.push_back(block);
    }
    held.insert(std::move(subject));
  }
  if (published > 0) {
    spdlog::info("twin: Redis lost its data; published again {} block{} held here", published,
                 published == 1 ? "" : "s");
  }
  std::erase_if(shared_blocks_, [&](const auto& entry) { return !held.contains(entry.first); });
  for (const auto& block : gone) {
    spdlog::info(
        "twin: the block of {} is no longer in Redis: a twin lifted it while this "
        "balancer did not hear from Redis",
        describe(block));
    lift_blocks(block.network, block.listener, false);
  }
}

}  // namespace pb::control
