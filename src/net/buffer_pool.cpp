#include "protobalance/net/buffer_pool.hpp"

namespace pb::net {

BufferPool::Lease BufferPool::borrow() {
  ++outstanding_;
  if (!free_.empty()) {
    auto data = std::move(free_.back());
    free_.pop_back();
    return Lease(*this, std::move(data));
  }
  // for_overwrite: the bytes are read into before they are used; zeroing 64 KiB would cost more
  // than the read itself.
  return Lease(*this, std::make_unique_for_overwrite<std::byte[]>(kBufferSize));
}

void BufferPool::give_back(std::unique_ptr<std::byte[]> data) {
  --outstanding_;
  if (free_.size() < keep_) free_.push_back(std::move(data));
}

}  // namespace pb::net
