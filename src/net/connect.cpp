#include "protobalance/net/connect.hpp"

#include <boost/asio/error.hpp>

#include "protobalance/net/proxy_protocol.hpp"

namespace pb::net {

namespace asio = boost::asio;

std::string_view local_header(config::ProxyProtocol version) { return proxy::local_header(version); }

bool is_local_shortage(const boost::system::error_code& ec) {
  return ec == asio::error::no_descriptors || ec.value() == ENFILE ||
         ec == asio::error::no_buffer_space || ec == asio::error::no_memory;
}

balance::FailureReason classify_connect_error(const boost::system::error_code& ec) {
  namespace err = asio::error;
  if (ec == err::connection_refused) return balance::FailureReason::refused;
  if (ec == err::timed_out) return balance::FailureReason::timeout;
  if (ec == err::connection_reset || ec == err::connection_aborted)
    return balance::FailureReason::reset;
  if (ec == err::eof || ec == err::broken_pipe) return balance::FailureReason::closed;
  return balance::FailureReason::unreachable;
}

}  // namespace pb::net
