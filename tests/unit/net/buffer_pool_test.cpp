#include "protobalance/net/buffer_pool.hpp"

#include <vector>

#include <gtest/gtest.h>

namespace pb::net {
namespace {

TEST(BufferPool, LeaseReturnsItsBufferAndIsReused) {
  // Verifies that a lease gives its buffer back when destroyed, and that the next borrow reuses
  // the same memory instead of allocating.
  BufferPool pool(4);
  std::byte* first = nullptr;
  {
    auto lease = pool.borrow();
    first = lease.data();
    EXPECT_EQ(pool.outstanding(), 1U);
    EXPECT_EQ(pool.cached(), 0U);
  }
  EXPECT_EQ(pool.outstanding(), 0U);
  EXPECT_EQ(pool.cached(), 1U);
  auto again = pool.borrow();
  EXPECT_EQ(again.data(), first);
  EXPECT_EQ(pool.cached(), 0U);
}

TEST(BufferPool, KeepsAtMostItsLimitOfIdleBuffers) {
  // Verifies that after a burst of leases only `keep` buffers stay cached: an idle worker holds
  // a bounded amount of memory.
  BufferPool pool(3);
  {
    std::vector<BufferPool::Lease> leases;
    for (int i = 0; i < 10; ++i) leases.push_back(pool.borrow());
    EXPECT_EQ(pool.outstanding(), 10U);
  }
  EXPECT_EQ(pool.outstanding(), 0U);
  EXPECT_EQ(pool.cached(), 3U);
}

TEST(BufferPool, MovedFromLeaseDoesNotReturnTwice) {
  // Verifies that moving a lease transfers the buffer: only the destination gives it back.
  BufferPool pool(4);
  {
    auto a = pool.borrow();
    auto b = std::move(a);
    EXPECT_NE(b.data(), nullptr);
  }
  EXPECT_EQ(pool.outstanding(), 0U);
  EXPECT_EQ(pool.cached(), 1U);
}

}  // namespace
}  // namespace pb::net
