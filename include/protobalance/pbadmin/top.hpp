#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "protobalance/pbadmin/context.hpp"
#include "protobalance/pbadmin/top_view.hpp"

// `pbadmin top`: a live view, refreshed every --interval.
namespace pb::pbadmin {

struct TopArgs {
  unsigned count = 0;  // 0 = until q or a signal
  std::string interval = "1s";
};

// --interval: a duration ("500ms", "2s") or a number of seconds ("0.5", "2"), 100 ms at least;
// nullopt for anything else.
std::optional<std::chrono::milliseconds> parse_top_interval(const std::string& text);

// Runs `top`: the screen `make_screen` makes when standard output is a terminal (and a factory is
// given), plain text otherwise. Returns the exit code.
int top_command(const Context& ctx, const TopArgs& args, TopScreenFactory make_screen);

}  // namespace pb::pbadmin
