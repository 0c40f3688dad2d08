#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace pb::net {

// A per-thread pool of fixed-size relay buffers. A relay direction borrows a buffer only while it
// moves bytes (read, then write until done) and gives it back before it waits for the next
// readiness event, so an idle connection holds no buffer. Not thread-safe: one pool per worker.
class BufferPool {
 public:
  // 16 KiB: measured cheaper per GB than 64 KiB on bulk transfers (the buffer stays in L1/L2
  // between the copy in and the copy out); see BENCHMARKS.md.
  static constexpr std::size_t kBufferSize = 16 * 1024;

  // `keep` is how many returned buffers are cached for reuse; the rest are freed.
  explicit BufferPool(std::size_t keep = 16) : keep_(keep) {}
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // A borrowed buffer, returned to its pool when destroyed.
  class Lease {
   public:
    Lease(BufferPool& pool, std::unique_ptr<std::byte[]> data)
        : pool_(&pool), data_(std::move(data)) {}
    Lease(Lease&& other) noexcept = default;
    Lease& operator=(Lease&&) = delete;
    Lease(const Lease&) = delete;
    ~Lease() {
      if (data_) pool_->give_back(std::move(data_));
    }
    std::byte* data() const { return data_.get(); }
    static constexpr std::size_t size() { return kBufferSize; }
    // Takes the buffer out of the lease, still counted as borrowed; hand it back later by
    // wrapping it in a Lease of the same pool again.
    std::unique_ptr<std::byte[]> release() { return std::move(data_); }

   private:
    BufferPool* pool_;
    std::unique_ptr<std::byte[]> data_;
  };

  Lease borrow();
  std::size_t cached() const { return free_.size(); }
  std::size_t outstanding() const { return outstanding_; }

 private:
  void give_back(std::unique_ptr<std::byte[]> data);

  std::size_t keep_;
  std::size_t outstanding_ = 0;
  std::vector<std::unique_ptr<std::byte[]>> free_;
};

}  // namespace pb::net
