#include "protobalance/net/connection.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <spdlog/spdlog.h>

#include "protobalance/net/connect.hpp"
#include "protobalance/net/proxy_protocol.hpp"

namespace pb::net {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {

boost::system::error_code last_error() { return {errno, boost::system::system_category()}; }

std::string_view outcome_of(RelayEnd end, CloseCause cause) {
  if (cause == CloseCause::idle) return "idle_timeout";
  if (cause == CloseCause::operator_) return "closed_by_operator";
  switch (end) {
    case RelayEnd::finished: return "finished";
    case RelayEnd::client_error: return "client_error";
    case RelayEnd::node_error: return "node_error";
    case RelayEnd::node_closed_early: return "node_closed_early";
    case RelayEnd::closed: return "closed";
  }
  return "unknown";
}

}  // namespace

Connection::Connection(Worker& worker, std::shared_ptr<const Route> route, Fd client,
                       const tcp::endpoint& peer)
    : worker_(worker),
      route_(std::move(route)),
      client_fd_(std::move(client)),
      tried_(route_->cluster->nodes().size()) {
  facts_.source = peer;
  idle_ticks = worker.ticks_for(route_->cluster->config().idle_timeout);
  last_tick = worker.tick();
}

Connection::~Connection() {
  // Reached through finish() and Worker::retire, or when the worker is destroyed with the
  // connection still open: then it is accounted as closed here.
  if (lookup_ticket_) lookup_ticket_->connection = nullptr;
  if (phase_ != Phase::closed) {
    relay_.abort();
    release_node();
    if (counted_) {
      route_->stats->active.fetch_sub(1, std::memory_order_relaxed);
      worker_.connection_ended();
    }
  }
}

const balance::NodeRuntime* Connection::node_runtime() const {
  if (node_ < 0) return nullptr;
  return route_->cluster->nodes()[static_cast<std::uint32_t>(node_)].runtime.get();
}

void Connection::start() {
  counted_ = true;
  worker_.connection_started();
  route_->stats->connections.fetch_add(1, std::memory_order_relaxed);
  route_->stats->active.fetch_add(1, std::memory_order_relaxed);
  if (route_->access_log != nullptr) {
    started_ = std::chrono::steady_clock::now();
    log_ = std::make_unique<AccessRecord>();
    log_->listener = route_->listener;
    log_->cluster = route_->cluster->name();
  }
  client_fd_.set_no_delay();
  if (route_->client_phases.empty()) {
    if (look_up_affinity()) choose_node();
    return;
  }
  phase_ = Phase::client;
  if (route_->blocks) blocks_version_ = route_->blocks->version();
  if (!enter_client_phase()) return;
  run_client_phases();
}

// Prepares the current client phase: one that reads bytes needs the client socket in the
// poller and its deadline; one that decides from the address alone (allow/deny, limits) needs
// neither, so such a listener costs no extra registration or timer.
bool Connection::enter_client_phase() {
  const ClientPhase& phase = *route_->client_phases[client_phase_];
  if (phase.max_peek() == 0) return true;
  if (!register_client()) return false;
  worker_.arm(deadline_, phase.timeout());
  return true;
}

// Registers the client socket with the poller once (it stays registered across fall-overs);
// false (the connection finished) if that failed.
bool Connection::register_client() {
  if (client_slot_.registered) return true;
  // Bytes the client sent already are reported by the registration's first event: no read is
  // tried before it (one that would find nothing cost a system call on half the connections).
  client_slot_.readable = false;
  if (!worker_.poller().add(client_fd_.native_handle(), client_slot_)) {
    const auto ec = last_error();
    if (is_local_shortage(ec)) {
      reject(RejectReason::descriptors, "descriptors");
    } else {
      finish("client_error");
    }
    return false;
  }
  client_slot_.attach(&Connection::on_poll, this);
  return true;
}

void Connection::on_poll(void* self, PollSlot& slot) {
  auto& c = *static_cast<Connection*>(self);
  switch (c.phase_) {
    case Phase::client:
      if (&slot == &c.client_slot_ && (slot.readable || slot.peer_closed)) c.run_client_phases();
      break;
    case Phase::connect:
      if (&slot == &c.node_slot_ && slot.writable) {
        int error = 0;
        socklen_t length = sizeof error;
        if (::getsockopt(c.node_fd_.native_handle(), SOL_SOCKET, SO_ERROR, &error, &length) != 0) {
          c.on_connect_result(last_error());
        } else if (error != 0) {
          c.on_connect_result({error, boost::system::system_category()});
        } else if (::send(c.node_fd_.native_handle(), nullptr, 0,
                          MSG_DONTWAIT | MSG_NOSIGNAL) != 0 &&
                   (errno == EAGAIN || errno == EWOULDBLOCK)) {
          // Still in progress (an event left over from an earlier socket of this slot).
          slot.writable = false;
        } else {
          c.on_connect_result({});
        }
      }
      break;
    case Phase::node:
      if (&slot == &c.node_slot_ && slot.writable) c.continue_header();
      break;
    case Phase::relay:
      c.relay_.on_poll(slot);
      c.after_relay_step();
      break;
    case Phase::lookup:  // a client closing meanwhile is seen by the relay
    case Phase::choose:
    case Phase::closed:
      break;
  }
}

void Connection::on_deadline(void* self, bool abandoned) {
  if (abandoned) return;  // the worker is going away and frees the connection itself
  auto& c = *static_cast<Connection*>(self);
  switch (c.phase_) {
    case Phase::client: {
      const auto& phase = *c.route_->client_phases[c.client_phase_];
      spdlog::debug("{}: client {} too late for {}", c.route_->listener,
                    c.facts_.source.address().to_string(), phase.name());
      c.reject(phase.reject_reason(), "client_phase_timeout");
      break;
    }
    case Phase::lookup:
      // The twins did not answer in time (the link answers by lookup_timeout; this is the
      // margin): choose alone. A late answer finds the ticket cleared.
      c.lookup_ticket_->connection = nullptr;
      c.lookup_ticket_.reset();
      c.choose_node();
      break;
    case Phase::connect:
    case Phase::node:
      c.on_connect_result(asio::error::timed_out);
      break;
    case Phase::choose:
    case Phase::relay:
    case Phase::closed:
      break;
  }
}

void Connection::on_turn(void* self) {
  auto& c = *static_cast<Connection*>(self);
  if (c.phase_ != Phase::relay) return;
  c.relay_.resume();
  c.after_relay_step();
}

// Client phases: peek at what the client sent, let the current phase decide, take the bytes it
// consumed off the stream, go on with the next. The deadline is re-armed for each phase.
void Connection::run_client_phases() {
  const auto& phases = route_->client_phases;
  while (client_phase_ < phases.size()) {
    const ClientPhase& phase = *phases[client_phase_];
    const std::size_t want = std::min(phase.max_peek(), BufferPool::kBufferSize);
    Verdict verdict;
    std::size_t peeked = 0;
    if (want == 0) {
      verdict = phase.inspect({}, false, facts_);
    } else {
      auto buffer = worker_.buffers().borrow();
      const int fd = client_fd_.native_handle();
      ssize_t n;
      do {
        n = ::recv(fd, buffer.data(), want, MSG_PEEK | MSG_DONTWAIT);
      } while (n < 0 && errno == EINTR);
      // The peek shows every byte there will be once the client has shut its side: also when
      // its FIN came after the bytes (reported by the poller; the peek still returns them).
      bool peer_closed = n == 0 || client_slot_.peer_closed;
      if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          finish("client_error");
          return;
        }
        n = 0;
      }
      peeked = static_cast<std::size_t>(n);
      verdict = phase.inspect({reinterpret_cast<const std::uint8_t*>(buffer.data()), peeked},
                              peer_closed, facts_);
      if (verdict.kind == Verdict::Kind::more && (peer_closed || peeked >= want)) {
        verdict = Verdict::reject(peer_closed ? "closed before the phase was done"
                                              : "too many bytes");
      }
      if (verdict.kind == Verdict::Kind::pass && verdict.consume > 0) {
        // Take exactly the phase's bytes off the stream; what follows goes to the node.
        std::size_t taken = 0;
        while (taken < verdict.consume) {
          const ssize_t m = ::recv(fd, buffer.data(), verdict.consume - taken, MSG_DONTWAIT);
          if (m > 0) {
            taken += static_cast<std::size_t>(m);
          } else if (m < 0 && errno == EINTR) {
            continue;
          } else {
            finish("client_error");  // peeked bytes cannot vanish: the socket failed
            return;
          }
        }
      }
      if (verdict.kind == Verdict::Kind::pass) {
        // Bytes left on the stream (peeked and not taken, or beyond a peek that filled `want`)
        // raise no new event: the relay must read them without waiting for one.
        client_slot_.readable =
            peeked > verdict.consume || peeked >= want || client_slot_.peer_closed;
      }
    }
    if (verdict.kind == Verdict::Kind::more) {
      client_slot_.readable = false;  // the next bytes raise a new event
      return;
    }
    if (verdict.kind == Verdict::Kind::reject) {
      if (spdlog::should_log(spdlog::level::debug)) {
        spdlog::debug("{}: client {} refused by {}: {}", route_->listener,
                      facts_.source.address().to_string(), phase.name(), verdict.why);
      }
      reject(verdict.reason.value_or(phase.reject_reason()), "client_phase_reject");
      return;
    }
    ++client_phase_;
    if (client_phase_ < phases.size() && !enter_client_phase()) return;
  }
  deadline_.disarm();
  if (blocked_meanwhile()) {
    if (spdlog::should_log(spdlog::level::debug)) {
      spdlog::debug("{}: client {} refused: blocked while its client phases ran", route_->listener,
                    facts_.source.address().to_string());
    }
    reject(RejectReason::blocked, "client_phase_reject");
    return;
  }
  if (facts_.sni_route >= 0) take_sni_route();
  if (look_up_affinity()) choose_node();
}

// True when a block made while the client phases ran covers the client they ended with. The
// client phases can take long (a PROXY header, first bytes, a ClientHello awaited), and until the
// PROXY header is read the connection's client is its proxy: neither the route's block check,
// which may have run before the block or be missing (a listener gets one only while some block
// applies to it), nor the runtime's closing of a new block's running connections, which looks
// at the client known then, sees such a client. Costs one atomic load and a compare when the
// list did not change meanwhile, the usual case.
bool Connection::blocked_meanwhile() const {
  const BlockList* blocks = route_->blocks.get();
  if (blocks == nullptr || blocks->version() == blocks_version_) return false;
  return blocks->current_here().blocks(facts_.source.address(), route_->listener,
                                       BlockClock::now());
}

// The client's TLS server name matched a [[listener.route]]: from now on the connection is
// that route's (its cluster, idle timeout and affinity), still counted as the listener's.
void Connection::take_sni_route() {
  const auto index = static_cast<std::size_t>(facts_.sni_route);
  if (index >= route_->sni_routes.size()) return;
  route_ = route_->sni_routes[index];
  tried_ = balance::TriedSet(route_->cluster->nodes().size());
  idle_ticks = worker_.ticks_for(route_->cluster->config().idle_timeout);
  if (log_) log_->cluster = route_->cluster->name();
}

// The client's affinity entry, looked up once the client is known (after the client phases).
// Its node, if still configured, is preferred by the first choice (then its fall-over chain).
// Returns false when the connection waits for its twins' answer (a client unknown locally, with
// [twin]): on_shared_answer() or the deadline goes on with the choice.
bool Connection::look_up_affinity() {
  const balance::Cluster& cluster = *route_->cluster;
  const auto& cfg = cluster.config().affinity;
  affinity_enabled_ = cfg.enabled && route_->affinity != nullptr;
  if (!affinity_enabled_) return true;
  affinity_key_ = affinity::make_key(facts_.source.address(), cfg.prefix_v4, cfg.prefix_v6);
  const auto recorded = route_->affinity->lookup(cluster.name(), affinity_key_,
                                                 std::chrono::system_clock::now(), cfg.ttl);
  had_affinity_record_ = recorded.has_value();
  if (recorded) {
    affine_ = cluster.find(*recorded);
  } else if (route_->shared_affinity != nullptr) {
    auto ticket = std::make_shared<LookupTicket>(LookupTicket{this});
    Worker* worker = &worker_;
    const bool asked = route_->shared_affinity->lookup(
        cluster.name(), affinity_key_, [worker, ticket](std::optional<std::string> answer) {
          // On a link thread: only the worker may touch the connection.
          worker->post([ticket, answer = std::move(answer)]() mutable {
            if (ticket->connection != nullptr) {
              ticket->connection->on_shared_answer(std::move(answer));
            }
          });
        });
    if (asked) {
      phase_ = Phase::lookup;
      lookup_ticket_ = std::move(ticket);
      worker_.arm(deadline_, route_->shared_affinity->timeout() + std::chrono::milliseconds(100));
      return false;
    }
  }
  preferred_ = affine_;
  return true;
}

// The twins' answer for a client unknown locally: their node, when still configured here, is
// kept locally (no need to share it back) and preferred; without one the algorithm chooses
// alone and the decision is shared when the connection is recorded.
void Connection::on_shared_answer(std::optional<std::string> answer) {
  deadline_.disarm();
  lookup_ticket_->connection = nullptr;
  lookup_ticket_.reset();
  const balance::Cluster& cluster = *route_->cluster;
  if (answer) {
    affine_ = cluster.find(*answer);
    if (affine_ >= 0) {
      route_->affinity->pin(cluster.name(), affinity_key_, *answer,
                            std::chrono::system_clock::now(), affinity::AffinityMap::Source::twin);
      had_affinity_record_ = true;
    }
  }
  preferred_ = affine_;
  choose_node();
}

// Records which node served an affine client. The entry moves to the serving node unless its
// own node is only passing out of reach (unavailable or full): then the client goes back to it
// once it is back. A draining, offline or removed node loses its clients for good.
void Connection::record_affinity(std::uint32_t served) {
  const balance::Cluster& cluster = *route_->cluster;
  auto& stats = *route_->affinity_stats;
  if (!had_affinity_record_) {
    stats.miss.fetch_add(1, std::memory_order_relaxed);
  } else if (affine_ == static_cast<std::int32_t>(served)) {
    stats.hit.fetch_add(1, std::memory_order_relaxed);
  } else if (affine_ >= 0 &&
             cluster.nodes()[static_cast<std::uint32_t>(affine_)].runtime->admin_state.load(
                 std::memory_order_relaxed) == config::AdminState::available) {
    // Transient: keep the entry as it is (its last_seen is refreshed by the next connection
    // the node itself serves).
    stats.hit.fetch_add(1, std::memory_order_relaxed);
    return;
  } else {
    stats.moved.fetch_add(1, std::memory_order_relaxed);
  }
  route_->affinity->record(cluster.name(), affinity_key_, cluster.nodes()[served].name,
                           std::chrono::system_clock::now());
}

void Connection::choose_node() {
  phase_ = Phase::choose;
  balance::Cluster& cluster = *route_->cluster;
  const std::int32_t chosen =
      cluster.choose(worker_.index(), facts_.source.address(), tried_, preferred_);
  if (chosen < 0) {
    if (spdlog::should_log(spdlog::level::debug)) {  // to_string() allocates: only when logged
      spdlog::debug("{}: no node of cluster {} can take client {}", route_->listener,
                    cluster.name(), facts_.source.address().to_string());
    }
    reject(RejectReason::no_node, "no_node");
    return;
  }
  preferred_ = chosen;  // if it fails, its fall-over chain comes next
  node_ = chosen;
  connect_node();
}

// A non-blocking connect() on a socket of the worker's poller: no timer of its own (the
// worker's deadline list), no extra coroutine (measured in BENCHMARKS.md).
void Connection::connect_node() {
  phase_ = Phase::connect;
  const auto& target = route_->cluster->nodes()[static_cast<std::uint32_t>(node_)];
  if (log_) ++log_->attempts;
  connect_started_ = std::chrono::steady_clock::now();
  node_slot_.reset();
  const tcp::endpoint& endpoint = target.endpoint;
  const int fd = ::socket(endpoint.protocol().family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                          endpoint.protocol().protocol());
  if (fd < 0) {
    on_connect_result(last_error());
    return;
  }
  node_fd_ = Fd(fd);
  if (::connect(fd, endpoint.data(), static_cast<socklen_t>(endpoint.size())) == 0) {
    on_connect_result({});
    return;
  }
  if (errno != EINPROGRESS) {
    on_connect_result(last_error());
    return;
  }
  // A node on the same host has usually completed the handshake within connect() itself. A
  // send() of nothing says so (0), or reports the connect's error, or says EAGAIN while it is
  // still in progress; only then is the socket registered and waited for.
  if (::send(fd, nullptr, 0, MSG_DONTWAIT | MSG_NOSIGNAL) == 0) {
    on_connect_result({});
    return;
  }
  if (errno != EAGAIN && errno != EWOULDBLOCK) {
    on_connect_result(last_error());
    return;
  }
  node_slot_.writable = false;  // the registration reports EPOLLOUT once connected (or failed)
  if (!worker_.poller().add(fd, node_slot_)) {
    on_connect_result(last_error());
    return;
  }
  node_slot_.attach(&Connection::on_poll, this);
  worker_.arm(deadline_, route_->cluster->config().connect_timeout);
}

// Accounts for one finished connect attempt (or a failed PROXY header write) and goes on: to
// the node phase, to the next node, or to the end.
void Connection::on_connect_result(const boost::system::error_code& ec) {
  deadline_.disarm();
  balance::Cluster& cluster = *route_->cluster;
  const auto index = static_cast<std::uint32_t>(node_);
  const balance::Node& target = cluster.nodes()[index];
  if (!ec) {
    if (phase_ == Phase::connect) {
      cluster.on_connected(index, std::chrono::steady_clock::now() - connect_started_);
      node_fd_.set_no_delay();
      node_phase();
    } else {
      relay();  // the node phase is done
    }
    return;
  }
  if (is_local_shortage(ec)) {
    // Our own shortage, not the node's fault: do not mark it unavailable.
    if (!worker_.warned_descriptors) {
      worker_.warned_descriptors = true;
      spdlog::warn("{}: out of descriptors ({}); closing clients until some are free",
                   route_->listener, ec.message());
    }
    reject(RejectReason::descriptors, "descriptors");
    return;
  }
  const auto reason = classify_connect_error(ec);
  spdlog::debug("{}: connect to {}/{} failed ({}); trying the next node", route_->listener,
                cluster.name(), target.name, balance::to_string(reason));
  cluster.on_failed(index, reason);
  target.runtime->failovers.fetch_add(1, std::memory_order_relaxed);
  if (log_) ++log_->fallovers;
  next_node();
}

// Gives the node back and offers the client to the next candidate.
void Connection::next_node() {
  release_node();
  node_fd_.close();
  node_slot_.reset();
  choose_node();
}

// The node phase: a PROXY header when the node wants one, written before any client byte (and
// before splice). A fresh socket's send buffer takes it whole; a rest waits for room.
void Connection::node_phase() {
  const auto index = static_cast<std::uint32_t>(node_);
  const proxy::Version version = route_->cluster->config().nodes[index].proxy_protocol;
  if (version == proxy::Version::off) {
    relay();
    return;
  }
  phase_ = Phase::node;
  if (!facts_.has_destination) {
    // The address the client connected to: the client socket's own.
    sockaddr_storage address{};
    socklen_t length = sizeof address;
    auto* name = reinterpret_cast<sockaddr*>(&address);
    if (::getsockname(client_fd_.native_handle(), name, &length) == 0) {
      std::memcpy(facts_.destination.data(), &address,
                  std::min<std::size_t>(length, sizeof address));
      facts_.destination.resize(length);
      facts_.has_destination = true;
    }
  }
  // v2 carries the TLS server name, if any, in an AUTHORITY TLV (at most a DNS name).
  std::uint8_t header[proxy::kMaxV1 + 64 + 256];
  std::size_t size = 0;
  if (version == proxy::Version::v1) {
    size = proxy::encode_v1(facts_.source, facts_.destination,
                            {reinterpret_cast<char*>(header), sizeof header});
  } else {
    size = proxy::encode_v2(facts_.source, facts_.destination, facts_.server_name,
                            {header, sizeof header});
  }
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::send(node_fd_.native_handle(), header + done, size - done,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      done += static_cast<std::size_t>(n);
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      break;
    } else {
      on_connect_result(last_error());
      return;
    }
  }
  if (done == size) {
    relay();
    return;
  }
  header_ = std::make_unique<std::uint8_t[]>(size - done);
  std::memcpy(header_.get(), header + done, size - done);
  header_offset_ = 0;
  header_size_ = static_cast<std::uint16_t>(size - done);
  node_slot_.writable = false;
  if (!node_slot_.registered) {
    if (!worker_.poller().add(node_fd_.native_handle(), node_slot_)) {
      on_connect_result(last_error());
      return;
    }
    node_slot_.attach(&Connection::on_poll, this);
  }
  worker_.arm(deadline_, route_->cluster->config().connect_timeout);
}

void Connection::continue_header() {
  while (header_offset_ < header_size_) {
    const ssize_t n = ::send(node_fd_.native_handle(), header_.get() + header_offset_,
                             header_size_ - header_offset_, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      header_offset_ = static_cast<std::uint16_t>(header_offset_ + n);
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      node_slot_.writable = false;
      return;
    } else {
      header_.reset();
      on_connect_result(last_error());
      return;
    }
  }
  header_.reset();
  on_connect_result({});
}

void Connection::relay() {
  phase_ = Phase::relay;
  const auto index = static_cast<std::uint32_t>(node_);
  if (affinity_enabled_) record_affinity(index);
  if (log_) {
    log_->connect_time = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - connect_started_);
  }
  if (!register_client()) return;
  // A node connected a moment ago has rarely sent anything yet: registering reports it if it
  // has (EPOLL_CTL_ADD looks at the socket's state). A connect that had to wait registered it.
  if (!node_slot_.registered) {
    if (!worker_.poller().add(node_fd_.native_handle(), node_slot_)) {
      finish("descriptors");
      return;
    }
    node_slot_.attach(&Connection::on_poll, this);
  }
  relay_.start(client_fd_, node_fd_, client_slot_, node_slot_, worker_.buffers(), worker_.pipes(),
               {.allow_early_close = true, .half_close = route_->cluster->config().half_close});
  after_relay_step();
}

void Connection::after_relay_step() {
  if (relay_.take_activity()) last_tick = worker_.tick();
  if (relay_.done()) {
    on_relay_done();
  } else if (relay_.yielding()) {
    worker_.defer(turn_);  // bytes still waiting: let the worker's other connections run first
  }
}

void Connection::on_relay_done() {
  turn_.unlink();
  const RelayResult result = relay_.result();
  balance::Cluster& cluster = *route_->cluster;
  const auto index = static_cast<std::uint32_t>(node_);
  const balance::Node& target = cluster.nodes()[index];
  target.runtime->bytes_to_node.fetch_add(result.bytes_to_node, std::memory_order_relaxed);
  target.runtime->bytes_to_client.fetch_add(result.bytes_to_client, std::memory_order_relaxed);
  if (result.end == RelayEnd::node_closed_early && cause_ == CloseCause::none) {
    spdlog::debug("{}: {}/{} closed before any data; trying the next node", route_->listener,
                  cluster.name(), target.name);
    cluster.on_failed(index, balance::FailureReason::closed);
    target.runtime->failovers.fetch_add(1, std::memory_order_relaxed);
    if (log_) ++log_->fallovers;
    next_node();
    return;
  }
  if (log_) {
    log_->node = target.name;
    log_->bytes_to_node = result.bytes_to_node;
    log_->bytes_to_client = result.bytes_to_client;
  }
  if (spdlog::should_log(spdlog::level::debug)) {  // to_string() allocates: only when logged
    spdlog::debug("{}: {}:{} via {}/{}: {} bytes to node, {} to client, {}", route_->listener,
                  facts_.source.address().to_string(), facts_.source.port(), cluster.name(),
                  target.name, result.bytes_to_node, result.bytes_to_client, to_string(result.end));
  }
  finish(outcome_of(result.end, cause_));
}

void Connection::close(CloseCause cause) {
  if (phase_ == Phase::closed) return;
  cause_ = cause;
  const std::string_view outcome =
      cause == CloseCause::idle ? "idle_timeout" : "closed_by_operator";
  if (phase_ == Phase::relay) {
    relay_.abort();
    on_relay_done();
    return;
  }
  finish(outcome);
}

void Connection::reject(RejectReason reason, std::string_view outcome) {
  route_->stats->rejected[static_cast<std::size_t>(reason)].fetch_add(1, std::memory_order_relaxed);
  finish(outcome);
}

void Connection::release_node() {
  if (node_ < 0) return;
  route_->cluster->release(static_cast<std::uint32_t>(node_));
  tried_.insert(static_cast<std::uint32_t>(node_));
  node_ = -1;
}

// The one way a connection ends.
void Connection::finish(std::string_view outcome) {
  if (phase_ == Phase::closed) return;
  phase_ = Phase::closed;
  if (lookup_ticket_) lookup_ticket_->connection = nullptr;  // a twin answer still on its way
  deadline_.disarm();
  turn_.unlink();
  client_slot_.detach();
  node_slot_.detach();
  release_node();
  client_fd_.close();
  node_fd_.close();
  header_.reset();
  facts_.client_ticket.release();
  if (log_) {
    if (log_->outcome.empty()) log_->outcome = outcome;
    log_->server_name = facts_.server_name;
    log_->client_address = facts_.source.address();
    log_->client_port = facts_.source.port();
    log_->end_time = std::chrono::system_clock::now();
    log_->duration = std::chrono::duration_cast<std::chrono::microseconds>(
        std::chrono::steady_clock::now() - started_);
    route_->access_log->submit(std::move(*log_));
    log_.reset();
  }
  if (counted_) {
    counted_ = false;
    route_->stats->active.fetch_sub(1, std::memory_order_relaxed);
    worker_.connection_ended();
  }
  worker_.retire(*this);
}

}  // namespace pb::net
