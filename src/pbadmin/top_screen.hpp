#pragma once

#include <chrono>
#include <memory>

#include "protobalance/pbadmin/top_view.hpp"

namespace pb::pbadmin {

// The ncurses screen of `pbadmin top` on standard output, keys from standard input when it is a
// terminal. Throws std::runtime_error when the terminal cannot be driven (unknown TERM).
std::unique_ptr<TopScreen> make_top_screen(std::chrono::milliseconds interval);

}  // namespace pb::pbadmin
