#include "protobalance/net/relay.hpp"

#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>

namespace pb::net {

namespace {

// Reads per readiness event before yielding to other connections of the worker (fairness).
constexpr int kMaxBurst = 16;
// Bytes per splice(): a pipe's default capacity.
constexpr std::size_t kSpliceChunk = 64 * 1024;
constexpr unsigned kSpliceFlags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;

}  // namespace

std::string_view to_string(RelayEnd end) {
  switch (end) {
    case RelayEnd::finished: return "finished";
    case RelayEnd::node_closed_early: return "node closed before data";
    case RelayEnd::client_error: return "client error";
    case RelayEnd::node_error: return "node error";
    case RelayEnd::closed: return "closed";
  }
  return "?";
}

Relay::~Relay() {
  // A relay destroyed while running (its worker is going away) may hold a buffer or a pipe
  // with bytes in it: close the pipe rather than give it back.
  for (Direction* d : {&up_, &down_}) {
    if (d->pipe.read >= 0) PipePool::close(d->pipe);
    if (d->pending) give_back(*d);
  }
}

void Relay::start(Fd& client, Fd& node, PollSlot& client_slot, PollSlot& node_slot,
                  BufferPool& buffers, PipePool& pipes, RelayOptions options) {
  buffers_ = &buffers;
  pipes_ = &pipes;
  up_ = Direction{};
  down_ = Direction{};
  up_.from = &client;
  up_.to = &node;
  up_.from_slot = &client_slot;
  up_.to_slot = &node_slot;
  down_.from = &node;
  down_.to = &client;
  down_.from_slot = &node_slot;
  down_.to_slot = &client_slot;
  down_.from_node = true;
  up_.state = down_.state = State::running;
  options_ = options;
  consumed_ = false;
  stopping_ = false;
  started_ = true;
  // A direction reads once its socket is known to be readable: a socket registered a moment ago
  // reports the bytes queued on it with its first event, so no read that would find nothing
  // (EAGAIN) is tried.
  for (Direction* d : {&up_, &down_}) {
    if (d->state != State::running) continue;  // ended by the other direction's error
    if (d->from_slot->readable || stopping_) {
      pump(*d);
    } else {
      d->state = State::waiting_read;
    }
  }
}

void Relay::on_poll(const PollSlot& slot) {
  for (Direction* d : {&up_, &down_}) {
    if (d->state == State::waiting_read && d->from_slot == &slot && slot.readable) {
      pump(*d);
    } else if (d->state == State::waiting_write && d->to_slot == &slot && slot.writable) {
      continue_write(*d);
    }
  }
}

void Relay::resume() {
  for (Direction* d : {&up_, &down_}) {
    if (d->state == State::yielding) pump(*d);
  }
}

void Relay::abort() {
  stopping_ = true;
  end_waiting(up_);
  end_waiting(down_);
}

RelayResult Relay::result() const {
  RelayResult r;
  r.bytes_to_node = up_.bytes;
  r.bytes_to_client = down_.bytes;
  if (down_.end == End::early_close) {
    r.end = RelayEnd::node_closed_early;
  } else if (up_.end == End::read_error || down_.end == End::write_error) {
    r.end = RelayEnd::client_error;
  } else if (down_.end == End::read_error || up_.end == End::write_error) {
    r.end = RelayEnd::node_error;
  } else if (up_.end == End::aborted || down_.end == End::aborted) {
    r.end = RelayEnd::closed;
  } else {
    r.end = RelayEnd::finished;
  }
  return r;
}

// Tries to read first (the peer has often sent already), then waits for readiness; the buffer
// goes back to the pool before any wait for readability.
void Relay::pump(Direction& d) {
  d.state = State::running;
  if (stopping_) {
    end(d, End::aborted);
    return;
  }
  if (d.splicing) {
    pump_spliced(d);
    return;
  }
  auto buffer = buffers_->borrow();
  for (int burst = 0; burst < kMaxBurst;) {
    const ssize_t n = ::recv(d.from->native_handle(), buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (n > 0) {
      ++burst;
      consumed_ = true;
      activity_ = true;
      const auto size = static_cast<std::size_t>(n);
      std::size_t done = 0;
      if (!send_some(d, buffer.data(), size, done)) {
        end(d, End::write_error);
        return;
      }
      if (done < size) {  // the receiver is slow: keep the bytes until it has room
        d.pending = buffer.release();
        d.write_offset = static_cast<std::uint32_t>(done);
        d.write_size = static_cast<std::uint32_t>(size);
        d.state = State::waiting_write;
        return;
      }
      d.bytes += size;
      if (size == buffer.size() && d.can_splice) {  // a bulk transfer: splice from here on
        d.splicing = true;
        pump_spliced(d);
        return;
      }
      switch (after_read(d, size, buffer.size())) {
        case AfterRead::more: continue;
        case AfterRead::drained: d.state = State::waiting_read; return;
        case AfterRead::ended: end(d, End::eof); return;
      }
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      d.from_slot->readable = false;
      d.state = State::waiting_read;
      return;
    }
    if (d.from_node && options_.allow_early_close && !consumed_) {
      end(d, End::early_close);
    } else if (n < 0) {
      end(d, End::read_error);
    } else {
      consumed_ = true;  // a FIN passed on counts as traffic: the node may react to it
      end(d, End::eof);
    }
    return;
  }
  d.state = State::yielding;  // bytes still waiting: let the worker's other connections run
}

// As pump(), with splice() through a pipe instead of recv() and send() through a buffer. The
// pipe goes back to the pool whenever it is empty and the direction waits for readability.
void Relay::pump_spliced(Direction& d) {
  if (d.pipe.read < 0) {
    const auto pipe = pipes_->borrow();
    if (!pipe) {  // out of descriptors: copy instead, for the rest of this connection
      d.splicing = false;
      d.can_splice = false;
      pump(d);
      return;
    }
    d.pipe = *pipe;
  }
  const int from = d.from->native_handle();
  for (int burst = 0; burst < kMaxBurst;) {
    const ssize_t n = ::splice(from, nullptr, d.pipe.write, nullptr, kSpliceChunk, kSpliceFlags);
    if (n > 0) {
      ++burst;
      activity_ = true;
      d.write_offset = 0;
      d.write_size = static_cast<std::uint32_t>(n);
      if (!flush_pipe(d)) {
        release_pipe(d, false);
        end(d, End::write_error);
        return;
      }
      if (d.write_offset < d.write_size) {  // the receiver is slow: the pipe keeps the bytes
        d.state = State::waiting_write;
        return;
      }
      d.bytes += static_cast<std::size_t>(n);
      // Unlike recv(), a short splice() does not mean drained: it may have run out of pipe
      // slots (one per segment) or stopped after one chunk. Read on until EAGAIN.
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    release_pipe(d, true);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      d.from_slot->readable = false;
      d.state = State::waiting_read;
    } else if (n < 0) {
      end(d, End::read_error);
    } else {
      end(d, End::eof);
    }
    return;
  }
  release_pipe(d, true);
  d.state = State::yielding;
}

// With edge-triggered events a socket must be read until it is known to be drained: a full
// read may leave more. A short read has taken everything there was. If the peer's FIN had
// arrived before the read (EPOLLRDHUP), every byte before it was queued already, so the stream
// has ended: the read that would return 0 is saved (one system call per direction that ends
// with its last bytes, as an HTTP/1.0 response does). Not with an error pending (EPOLLERR,
// a reset): the next read reports it.
Relay::AfterRead Relay::after_read(Direction& d, std::size_t got, std::size_t asked) {
  if (got == asked) return AfterRead::more;
  if (d.from_slot->peer_closed) return d.from_slot->failed ? AfterRead::more : AfterRead::ended;
  d.from_slot->readable = false;
  return AfterRead::drained;
}

bool Relay::flush_pipe(Direction& d) {
  while (d.write_offset < d.write_size) {
    const ssize_t n = ::splice(d.pipe.read, nullptr, d.to->native_handle(), nullptr,
                               d.write_size - d.write_offset, kSpliceFlags);
    if (n > 0) {
      d.write_offset += static_cast<std::uint32_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      d.to_slot->writable = false;
      return true;
    }
    return false;
  }
  return true;
}

void Relay::release_pipe(Direction& d, bool empty) {
  if (d.pipe.read < 0) return;
  if (empty) {
    pipes_->give_back(d.pipe);
  } else {
    PipePool::close(d.pipe);  // may hold bytes: never reuse it
  }
  d.pipe = Pipe{};
}

void Relay::continue_write(Direction& d) {
  d.state = State::running;
  if (d.pipe.read >= 0) {
    if (!flush_pipe(d)) {
      release_pipe(d, false);
      end(d, End::write_error);
      return;
    }
    if (d.write_offset < d.write_size) {
      d.state = State::waiting_write;
      return;
    }
    d.bytes += d.write_size;
    pump_spliced(d);
    return;
  }
  std::size_t done = d.write_offset;
  if (!send_some(d, d.pending.get(), d.write_size, done)) {
    give_back(d);
    end(d, End::write_error);
    return;
  }
  if (done < d.write_size) {
    d.write_offset = static_cast<std::uint32_t>(done);
    d.state = State::waiting_write;
    return;
  }
  d.bytes += d.write_size;
  give_back(d);
  pump(d);
}

bool Relay::send_some(Direction& d, const std::byte* data, std::size_t size, std::size_t& done) {
  while (done < size) {
    const ssize_t n =
        ::send(d.to->native_handle(), data + done, size - done, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      done += static_cast<std::size_t>(n);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      d.to_slot->writable = false;
      return true;
    }
    return false;
  }
  return true;
}

void Relay::give_back(Direction& d) {
  if (!d.pending) return;
  const BufferPool::Lease lease(*buffers_, std::move(d.pending));  // back to the pool
}

void Relay::end(Direction& d, End how) {
  d.state = State::ended;
  d.end = how;
  switch (how) {
    case End::eof:
      // When the other direction has ended already, the relay is over and closing the socket
      // sends the FIN: one system call less per connection.
      if (other(d).state == State::ended) break;
      if (d.from_node && !options_.half_close) {
        // The node's last bytes are delivered (a direction reads again only once it wrote
        // everything): the client's direction stops, and closing both sockets ends both.
        stopping_ = true;
        end_waiting(other(d), End::cut);
        break;
      }
      d.to->shutdown_send();  // pass the FIN on
      break;
    case End::early_close:
      // The client's direction ends without touching the client socket: it stays usable.
      stopping_ = true;
      end_waiting(up_);
      break;
    case End::read_error:
    case End::write_error:
      stopping_ = true;
      end_waiting(other(d));
      break;
    case End::none:
    case End::aborted:
    case End::cut:
      break;
  }
}

void Relay::end_waiting(Direction& d, End how) {
  if (d.state != State::waiting_read && d.state != State::waiting_write &&
      d.state != State::yielding) {
    return;
  }
  give_back(d);
  release_pipe(d, false);
  end(d, how);
}

}  // namespace pb::net
