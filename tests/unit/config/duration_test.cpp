#include "protobalance/config/duration.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace pb::config {
namespace {

using namespace std::chrono_literals;

TEST(ParseDuration, AcceptsEveryUnit) {
  // Verifies that each unit of the contract (ms, s, m, h, d) scales the number correctly.
  EXPECT_EQ(parse_duration("250ms"), Duration{250});
  EXPECT_EQ(parse_duration("3s"), Duration{3000});
  EXPECT_EQ(parse_duration("5m"), Duration{300'000});
  EXPECT_EQ(parse_duration("1h"), Duration{3'600'000});
  EXPECT_EQ(parse_duration("30d"), Duration{30LL * 86'400'000});
}

TEST(ParseDuration, AcceptsZeroAndLeadingZeros) {
  // Verifies that "0s" is a valid zero duration (idle_timeout "0s" = never) and that leading zeros
  // are plain decimal.
  EXPECT_EQ(parse_duration("0s"), Duration{0});
  EXPECT_EQ(parse_duration("0ms"), Duration{0});
  EXPECT_EQ(parse_duration("010s"), Duration{10'000});
}

TEST(ParseDuration, RejectsMalformedText) {
  // Verifies that anything but "<digits><unit>" is refused: no unit, sign, fraction, space, long
  // unit names, case.
  for (const char* bad : {"", "3", "s", "-1s", "+1s", "1.5s", "3 s", " 3s", "3s ", "3sec", "3S",
                          "3ms3", "3us", "3ns", "1h30m", "0x10s", "ms"}) {
    EXPECT_EQ(parse_duration(bad), std::nullopt) << "'" << bad << "'";
  }
}

TEST(ParseDuration, RejectsOverflowAndAcceptsTheLargestValue) {
  // Verifies that values just past the 64-bit millisecond range are refused instead of wrapping
  // around.
  EXPECT_EQ(parse_duration("9223372036854775807ms"), Duration{INT64_MAX});
  EXPECT_EQ(parse_duration("9223372036854775808ms"), std::nullopt);
  EXPECT_EQ(parse_duration("106751991167d"), Duration{106751991167LL * 86'400'000});
  EXPECT_EQ(parse_duration("106751991168d"), std::nullopt);
  EXPECT_EQ(parse_duration("99999999999999999999999s"), std::nullopt);
}

TEST(FormatDuration, UsesTheLargestExactUnit) {
  // Verifies that formatting picks the coarsest unit that divides the value exactly.
  EXPECT_EQ(format_duration(Duration{0}), "0s");
  EXPECT_EQ(format_duration(250ms), "250ms");
  EXPECT_EQ(format_duration(1500ms), "1500ms");
  EXPECT_EQ(format_duration(90s), "90s");
  EXPECT_EQ(format_duration(5min), "5m");
  EXPECT_EQ(format_duration(2h), "2h");
  EXPECT_EQ(format_duration(36h), "36h");
  EXPECT_EQ(format_duration(std::chrono::hours(24 * 30)), "30d");
  EXPECT_EQ(format_duration(Duration{-5000}), "-5s");
  EXPECT_EQ(format_duration(Duration{INT64_MIN}), "-9223372036854775808ms");
}

TEST(FormatDuration, RoundTripsThroughParse) {
  // Verifies that every formatted value parses back to the same duration.
  for (const Duration d :
       {Duration{0}, Duration{1}, Duration{999}, Duration{1000}, Duration{61'000},
        Duration{3'600'000}, Duration{86'400'000 * 7LL}, Duration{INT64_MAX}}) {
    EXPECT_EQ(parse_duration(format_duration(d)), d) << format_duration(d);
  }
}

}  // namespace
}  // namespace pb::config
