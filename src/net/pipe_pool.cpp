#include "protobalance/net/pipe_pool.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <array>

namespace pb::net {

PipePool::~PipePool() {
  for (const Pipe& pipe : free_) close(pipe);
}

std::optional<Pipe> PipePool::borrow() {
  if (!free_.empty()) {
    const Pipe pipe = free_.back();
    free_.pop_back();
    return pipe;
  }
  std::array<int, 2> fds{};
  if (::pipe2(fds.data(), O_NONBLOCK | O_CLOEXEC) != 0) return std::nullopt;
  return Pipe{fds[0], fds[1]};
}

void PipePool::give_back(Pipe pipe) {
  if (free_.size() < keep_) {
    free_.push_back(pipe);
  } else {
    close(pipe);
  }
}

void PipePool::close(Pipe pipe) {
  ::close(pipe.read);
  ::close(pipe.write);
}

}  // namespace pb::net
