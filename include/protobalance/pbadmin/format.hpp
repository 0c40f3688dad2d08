#pragma once

#include <boost/json/object.hpp>
#include <cstddef>
#include <ostream>
#include <string>
#include <vector>

#include "protobalance/affinity/entry_store.hpp"
#include "protobalance/state/block_table.hpp"

// What pbadmin prints for people (and the JSON of `affinity list`).
namespace pb::pbadmin {

// What `status` prints for people, from the daemon's GET /v1/status document: an aligned table of
// listeners, then per cluster a line (algorithm, affinity on/off) and an indented table of its
// nodes. State words only, no colour; "-" for no limit, no fall-over node or a missing field.
std::string format_status(const boost::json::object& status);

// An aligned table with the header CLIENT CLUSTER NODE FIRST_SEEN LAST_SEEN CONNECTIONS (the
// header alone when there are no rows), one line per row.
std::string format_affinity_table(const std::vector<affinity::AffinityRow>& rows);

// A JSON array of {client, cluster, node, first_seen, last_seen, connections}, times in ISO
// 8601 UTC; "[]" when empty. One line, newline-terminated.
std::string format_affinity_json(const std::vector<affinity::AffinityRow>& rows);

// `blocks`: an aligned table with the header NETWORK LISTENER CREATED EXPIRES ("*" for every
// listener, "-" for no end; the header alone when there are none), one line per block.
std::string format_blocks_table(const std::vector<state::BlockRow>& rows);

// A JSON array of {network, listener, created, expires}: listener null for every listener,
// times in ISO 8601 UTC, expires null for no end; "[]" when empty. One line, newline-terminated.
std::string format_blocks_json(const std::vector<state::BlockRow>& rows);

// Prints affinity rows as they arrive, in the format of format_affinity_table/_json. The table's
// columns are as wide as the widest cell of the first kAlignRows rows: a list that fits is
// exactly format_affinity_table()'s; a longer one streams the rest with those widths (a wider
// cell further down shifts its own line only), so memory stays flat and the first row comes at
// once.
class AffinityPrinter {
 public:
  static constexpr std::size_t kAlignRows = 1000;

  AffinityPrinter(std::ostream& out, bool json) : out_(out), json_(json) {}

  void add(affinity::AffinityRow row);
  // After a read error: closes what was already printed (a JSON array), prints nothing else.
  void abandon();
  // After the last row: prints what is buffered, closes the JSON array.
  void finish();

 private:
  void start_streaming();
  std::string table_line(const affinity::AffinityRow& r) const;

  std::ostream& out_;
  bool json_;
  bool any_ = false;
  bool streaming_ = false;
  bool finished_ = false;
  std::vector<affinity::AffinityRow> buffered_;
  std::vector<std::size_t> starts_;  // column start offsets, then the line's width
};

}  // namespace pb::pbadmin
