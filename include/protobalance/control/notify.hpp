#pragma once

#include <string_view>

namespace pb::control {

// Tells the service manager about a state change ("READY=1", "RELOADING=1", "STOPPING=1"):
// one datagram to the AF_UNIX socket named by $NOTIFY_SOCKET (a path, or "@name" for the
// abstract namespace), as sd_notify(3) describes the protocol. Does nothing when the variable is
// not set (not started by systemd with Type=notify); a failure to send is logged at debug and
// otherwise ignored, like sd_notify's.
//
// Written here rather than taken from libsystemd: the protocol is one sendto(), documented as
// stable, and libsystemd with the compression and crypto libraries it loads added 1.0 MB to the
// daemon's resident memory at start (BENCHMARKS.md).
void notify_service_manager(std::string_view state);

}  // namespace pb::control
