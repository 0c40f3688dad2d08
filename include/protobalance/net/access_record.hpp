#pragma once

// What a session hands to the access log. Header-only: the net area (where sessions live) fills
// and submits records through AccessLogSink; the metrics area implements the sink (AccessLog),
// so net does not depend on metrics.

#include <boost/asio/ip/address.hpp>
#include <chrono>
#include <cstdint>
#include <string>

namespace pb::net {

// One finished client connection, as its session saw it. The session fills it on its worker
// thread and hands it over whole; the writer thread formats it later, when the snapshot the
// names came from may be gone. So every text is an owned copy, never a string_view: cluster,
// listener and node names are short and fit std::string's inline buffer, so filling a record
// normally allocates nothing.
struct AccessRecord {
  std::chrono::system_clock::time_point end_time;  // when the connection finished
  boost::asio::ip::address client_address;
  std::uint16_t client_port = 0;
  std::string listener;
  std::string cluster;
  std::string node;                           // the node that served it; empty when none did
  std::uint32_t attempts = 0;                 // connect attempts, the successful one included
  std::uint32_t fallovers = 0;                // attempts that failed before any byte and moved on
  std::chrono::microseconds connect_time{0};  // of the successful attempt; 0 without one
  std::chrono::microseconds duration{0};      // from accept to close
  std::uint64_t bytes_to_node = 0;
  std::uint64_t bytes_to_client = 0;
  // How it ended, one word: finished, client_error, node_error, idle_timeout, no_node,
  // descriptors, node_offline, shutdown, ... (spaces are written as '_').
  std::string outcome;
  std::string server_name;  // the TLS server name (SNI) when the listener routes by it
};

// Where sessions send their records (implemented by AccessLog).
class AccessLogSink {
 public:
  virtual ~AccessLogSink() = default;
  // Takes the record if there is room, else drops and counts it; returns whether it was taken.
  // Never waits for I/O; callable from any thread.
  virtual bool submit(AccessRecord&& record) noexcept = 0;
  // Closes and reopens the log file before the next record (log rotation). Callable from any
  // thread; never waits for I/O.
  virtual void reopen() = 0;
};

}  // namespace pb::net
