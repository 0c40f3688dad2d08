#pragma once

#include <boost/json/object.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

// `pbadmin top`: what it shows, as plain data computed from the daemon's status documents
// (GET /v1/status), apart from how it is drawn (plain text here; the ncurses screen lives with
// pbadmin's main, so that only pbadmin links ncurses).
namespace pb::pbadmin {

// One status document and when it was fetched (the steady clock: rates need intervals only).
struct TopSample {
  boost::json::object status;
  std::chrono::steady_clock::time_point taken;
};

struct TopListenerRow {
  std::string name;
  std::string address;
  std::string cluster;  // where new connections go now
  std::int64_t active = 0;
  std::optional<double> connections_per_s;  // nullopt: no earlier sample, or a counter went back
};

// How a node's row should be coloured: green available and up, yellow draining, red offline or
// down.
enum class TopHealth : std::uint8_t { good, warning, bad };

struct TopNodeRow {
  std::string cluster;
  std::string name;
  std::string address;
  std::string state;  // available|draining|offline
  bool up = true;
  std::int64_t active = 0;
  std::optional<double> connections_per_s;  // established connections ("total") per second
  std::optional<double> bytes_per_s;        // both directions
  std::uint64_t failures = 0;
  std::uint32_t tier = 1;
  TopHealth health = TopHealth::good;
};

struct TopFrame {
  std::vector<TopListenerRow> listeners;
  std::vector<TopNodeRow> nodes;  // cluster by cluster, in the document's order
  std::uint64_t affinity_entries = 0;
  double seconds = 0;  // between the two samples; 0 when there was no earlier one
};

// Turns the current sample into rows; rates are the counters' growth since `previous` (matched by
// listener name and by cluster + node name) divided by the time between the samples. A row new
// since `previous`, a counter smaller than before (the daemon restarted) or no time between the
// samples gives no rate. Missing or mistyped fields count as 0 / empty: never throws.
TopFrame make_top_frame(const TopSample& current, const TopSample* previous);

// "12", "3.5", "-" (no value); bytes as "812", "1.5K", "23.0M", "1.2G" (powers of 1024).
std::string format_rate(const std::optional<double>& per_s);
std::string format_byte_rate(const std::optional<double>& per_s);

// The header line of a frame: "pbadmin top: N listeners, M nodes (U up), A affinity entries".
std::string top_summary(const TopFrame& frame);

// The two tables of a frame as aligned lines (numbers right-aligned, no trailing blanks), the
// header line first: node_lines[i + 1] shows frame.nodes[i] (a screen colours it by health).
// Listeners: LISTENER ADDRESS CLUSTER ACTIVE CONN/S.
// Nodes: CLUSTER NODE ADDRESS STATE UP TIER ACTIVE CONN/S BYTES/S FAILURES.
struct TopText {
  std::vector<std::string> listener_lines;
  std::vector<std::string> node_lines;
};
TopText layout_top(const TopFrame& frame);

// A frame as plain text (no escape codes): the summary, a blank line, the listener table, a
// blank line, the node table. Every line ends with '\n'.
std::string format_top_plain(const TopFrame& frame);

// The full-screen view of `pbadmin top` on a terminal. The ncurses implementation is part of
// pbadmin's own sources (src/pbadmin/top_screen.cpp), which hand a factory to run_pbadmin().
class TopScreen {
 public:
  virtual ~TopScreen() = default;
  // Redraws the whole screen. `message` (may be empty) is shown under the summary, e.g. that the
  // balancer did not answer the last refresh.
  virtual void draw(const TopFrame& frame, const std::string& message) = 0;
  // Waits `timeout`, or less when a key asks for something; true when the user asked to quit
  // (q). Keys are read only when standard input is a terminal.
  virtual bool wait_for_quit(std::chrono::milliseconds timeout) = 0;
};

// Makes the screen; throws std::runtime_error when the terminal cannot be used (unknown TERM).
using TopScreenFactory = std::unique_ptr<TopScreen> (*)(std::chrono::milliseconds interval);

}  // namespace pb::pbadmin
