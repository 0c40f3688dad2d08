// pbadmin: the operator's tool. The commands live in src/pbadmin (library pb_pbadmin), where
// tests can reach them; this file hands over the command line, and the ncurses screen of `top`.
#include <iostream>

#include "protobalance/pbadmin/commands.hpp"
#include "top_screen.hpp"

int main(int argc, char** argv) {
  return pb::pbadmin::run_pbadmin(argc, argv, std::cout, std::cerr, &pb::pbadmin::make_top_screen);
}
