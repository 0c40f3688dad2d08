#pragma once

#include <ostream>
#include <string>

namespace pb::pbadmin {

// Exit codes (the contract). Every failure also prints one line on stderr.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailed = 1;       // refused by the daemon, or the database unreadable
inline constexpr int kExitUsage = 2;        // bad command line or configuration file
inline constexpr int kExitUnreachable = 3;  // the daemon's admin socket does not answer

inline constexpr const char* kDefaultConfigFile = "/etc/protobalance/protobalance.toml";

// What every command may use: the global options and the output streams.
struct Context {
  std::string config_file = kDefaultConfigFile;
  bool json = false;
  std::ostream& out;
  std::ostream& err;
};

}  // namespace pb::pbadmin
