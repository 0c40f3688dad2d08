#pragma once

#include <cstddef>
#include <optional>
#include <vector>

namespace pb::net {

// A kernel pipe through which a relay direction splices bulk data from one socket to the other
// without copying it through user space.
struct Pipe {
  int read = -1;
  int write = -1;
};

// A per-thread pool of pipes, like BufferPool: a direction borrows a pipe only while bytes
// are in it, so an idle connection holds none. Not thread-safe: one pool per worker.
class PipePool {
 public:
  explicit PipePool(std::size_t keep = 16) : keep_(keep) {}
  ~PipePool();
  PipePool(const PipePool&) = delete;
  PipePool& operator=(const PipePool&) = delete;

  // A pipe (both ends non-blocking), or none when the process is out of descriptors: the
  // caller then copies through a buffer instead.
  std::optional<Pipe> borrow();
  // Returns an empty pipe for reuse. A pipe that may still hold bytes must be closed instead.
  void give_back(Pipe pipe);
  static void close(Pipe pipe);
  std::size_t cached() const { return free_.size(); }

 private:
  std::size_t keep_;
  std::vector<Pipe> free_;
};

}  // namespace pb::net
