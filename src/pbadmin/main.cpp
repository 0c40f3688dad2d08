// pbadmin: the operator's tool. The commands live in pb::control (admin_cli.cpp), where tests
// can reach them; this file only hands over the command line.
#include "protobalance/control/admin_cli.hpp"

int main(int argc, char** argv) {
  return pb::control::run_pbadmin(argc, argv);
}
