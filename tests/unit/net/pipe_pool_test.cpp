#include "protobalance/net/pipe_pool.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include <gtest/gtest.h>

namespace pb::net {
namespace {

bool is_open(int fd) { return ::fcntl(fd, F_GETFD) != -1 || errno != EBADF; }

TEST(PipePool, BorrowedPipeCarriesBytesAndIsNonBlocking) {
  // Verifies that a borrowed pipe is a working, non-blocking pipe: bytes written to one end come
  // out of the other, and reading an empty pipe says EAGAIN instead of blocking.
  PipePool pool;
  const auto pipe = pool.borrow();
  ASSERT_TRUE(pipe.has_value());
  ASSERT_EQ(::write(pipe->write, "bulk", 4), 4);
  char buffer[8] = {};
  ASSERT_EQ(::read(pipe->read, buffer, sizeof buffer), 4);
  EXPECT_EQ(std::string(buffer, 4), "bulk");
  EXPECT_EQ(::read(pipe->read, buffer, sizeof buffer), -1);
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_NE(::fcntl(pipe->read, F_GETFD) & FD_CLOEXEC, 0);
  pool.give_back(*pipe);
}

TEST(PipePool, ReturnedPipesAreReusedUpToTheKeepLimitAndTheRestClosed) {
  // Verifies that a returned pipe is handed out again (no new descriptors per transfer), that
  // only `keep` pipes are cached, that extra ones are closed, and that the pool closes what it
  // holds when destroyed.
  Pipe first;
  Pipe second;
  {
    PipePool pool(1);
    first = *pool.borrow();
    second = *pool.borrow();
    pool.give_back(first);
    pool.give_back(second);  // over the limit: closed
    EXPECT_EQ(pool.cached(), 1U);
    EXPECT_FALSE(is_open(second.read));
    EXPECT_FALSE(is_open(second.write));
    const Pipe again = *pool.borrow();
    EXPECT_EQ(again.read, first.read);
    EXPECT_EQ(again.write, first.write);
    pool.give_back(again);
    EXPECT_TRUE(is_open(first.read));
  }
  EXPECT_FALSE(is_open(first.read));
  EXPECT_FALSE(is_open(first.write));
}

}  // namespace
}  // namespace pb::net
