#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "protobalance/affinity/client_key.hpp"
#include "protobalance/affinity/entry_store.hpp"
#include "protobalance/control/top_view.hpp"

// pbadmin, the operator's command-line tool, as functions: src/pbadmin/main.cpp only calls
// run_pbadmin(), and tests can call the pieces.
namespace pb::control {

// Exit codes (the contract). Every failure also prints one line on stderr.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;       // refused by the daemon, or the database unreadable
inline constexpr int kExitUsage = 2;        // bad command line or configuration file
inline constexpr int kExitUnreachable = 3;  // the daemon's admin socket does not answer

inline constexpr const char* kDefaultConfigFile = "/etc/protobalance/protobalance.toml";

// Runs pbadmin: `pbadmin [--config FILE] [--json] COMMAND ...` (argv[0] is the program name).
// Results go to `out`, messages and errors to `err`; returns the exit code. --help and
// --version print to `out` and return 0.
//
// Commands:
//   status                                  listeners, clusters, nodes (admin API)
//   node set CLUSTER NODE STATE             available|draining|offline or green|yellow|red
//   reload                                  prints the changes, or the file's errors (exit 1)
//   route LISTENER CLUSTER | route LISTENER --reset
//   affinity list [--cluster C] [--node N] [--client ADDR]
//   affinity forget CLIENT [--cluster C]
//   affinity pin CLIENT NODE --cluster C
//   top [-n COUNT] [--interval DURATION]    live view (plain text unless a screen is given)
// `affinity list` reads the database in the configuration's state_dir directly and read-only,
// so it works with the daemon running or not; every other command talks to the daemon over the
// [admin] socket, HTTP/1.1 + JSON (see admin_server.hpp), and --json prints its answer.
int run_pbadmin(int argc, const char* const* argv, std::ostream& out, std::ostream& err);
int run_pbadmin(int argc, char** argv);  // std::cout and std::cerr
// Same, with the full-screen view of `top` (used when standard output is a terminal; without a
// factory, or on another output, `top` prints plain text).
int run_pbadmin(int argc, const char* const* argv, std::ostream& out, std::ostream& err,
                TopScreenFactory top_screen);

// What `affinity list` shows: empty strings and nullopt match everything.
struct AffinityFilter {
  std::string cluster;
  std::string node;
  std::optional<affinity::ClientKey> client;  // matches entries whose network overlaps it
};

// Keeps the rows that match `filter` and are not expired at `now` under `ttls` (the balancer
// never uses those and deletes them within seconds, or at its next start), sorted by cluster
// then numerically by client. Rows whose client text does not parse are kept unless a client
// filter is given.
std::vector<affinity::AffinityRow> select_affinity(std::vector<affinity::AffinityRow> rows,
                                                   const AffinityFilter& filter,
                                                   const affinity::TtlTable& ttls,
                                                   affinity::Clock::time_point now);

// What `status` prints for people, from the daemon's GET /v1/status document: an aligned table of
// listeners, then per cluster a line (algorithm, affinity on/off) and an indented table of its
// nodes. State words only, no colour; "-" for no limit, no fall-over node or a missing field.
std::string format_status(const boost::json::object& status);

// "2026-11-21T19:45:03Z".
std::string format_utc(std::int64_t unix_seconds);

// An aligned table with the header CLIENT CLUSTER NODE FIRST_SEEN LAST_SEEN CONNECTIONS (the
// header alone when there are no rows), one line per row.
std::string format_affinity_table(const std::vector<affinity::AffinityRow>& rows);

// A JSON array of {client, cluster, node, first_seen, last_seen, connections}, times in ISO
// 8601 UTC; "[]" when empty. One line, newline-terminated.
std::string format_affinity_json(const std::vector<affinity::AffinityRow>& rows);

}  // namespace pb::control
