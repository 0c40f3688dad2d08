#include "protobalance/config/utc_time.hpp"

#include <gtest/gtest.h>

namespace pb::config {
namespace {

TEST(UtcTime, Iso8601InUtc) {
  // Verifies the admin API's and pbadmin's time text: ISO 8601, UTC, whole seconds.
  EXPECT_EQ(format_utc(0), "1970-01-01T00:00:00Z");
  EXPECT_EQ(format_utc(1'795'203'903), "2026-11-20T19:45:03Z");
}

}  // namespace
}  // namespace pb::config
