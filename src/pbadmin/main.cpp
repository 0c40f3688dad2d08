// pbadmin: the operator's tool. The commands live in pb::control (admin_cli.cpp), where tests
// can reach them; this file hands over the command line, and the ncurses screen of `top`.
#include <iostream>

#include "protobalance/control/admin_cli.hpp"
#include "top_screen.hpp"

int main(int argc, char** argv) {
  return pb::control::run_pbadmin(argc, argv, std::cout, std::cerr, &pb::pbadmin::make_top_screen);
}
