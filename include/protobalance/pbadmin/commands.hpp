#pragma once

#include <ostream>

#include "protobalance/pbadmin/context.hpp"
#include "protobalance/pbadmin/top_view.hpp"

// pbadmin, the operator's command-line tool, as functions: src/pbadmin/main.cpp only calls
// run_pbadmin(), and tests can call the pieces.
namespace pb::pbadmin {

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
//   block NETWORK [--for DURATION] [--listener NAME]
//   unblock NETWORK [--listener NAME]
//   blocks                                  the block list (read from the database)
// `affinity list` and `blocks` read the database in the configuration's state_dir directly and
// read-only (database_reader.hpp), so they work with the daemon running or not; every other
// command talks to the daemon over the [admin] socket (daemon_client.hpp), and --json prints its
// answer.
int run_pbadmin(int argc, const char* const* argv, std::ostream& out, std::ostream& err);
int run_pbadmin(int argc, char** argv);  // std::cout and std::cerr
// Same, with the full-screen view of `top` (used when standard output is a terminal; without a
// factory, or on another output, `top` prints plain text).
int run_pbadmin(int argc, const char* const* argv, std::ostream& out, std::ostream& err,
                TopScreenFactory top_screen);

}  // namespace pb::pbadmin
