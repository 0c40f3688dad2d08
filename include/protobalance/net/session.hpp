#pragma once

#include <memory>
#include <string>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include "protobalance/balance/cluster.hpp"
#include "protobalance/net/worker.hpp"

namespace pb::net {

// Where one listener's new connections go, as seen by one worker. Each worker holds its own
// copy, so taking a reference for a new session touches no cache line shared between threads.
struct Route {
  std::string listener;
  std::shared_ptr<balance::Cluster> cluster;
};

// Serves one client connection from accept to close, on `worker`'s thread: chooses a node,
// connects with the cluster's connect_timeout, falls over to the next candidate while no byte
// has moved, then relays until both sides are done. Errors from the network are normal ends,
// never exceptions.
boost::asio::awaitable<void> run_session(Worker& worker, std::shared_ptr<const Route> route,
                                         boost::asio::ip::tcp::socket client);

}  // namespace pb::net
