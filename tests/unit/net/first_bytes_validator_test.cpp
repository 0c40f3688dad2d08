#include "protobalance/net/first_bytes_validator.hpp"

#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

namespace pb::net {
namespace {

using Result = FirstBytesValidator::Result;

constexpr std::string_view kHttp = "^(GET|HEAD|POST|PUT|DELETE|OPTIONS) /";

FirstBytesValidator make(std::string_view expression, std::size_t max_bytes = 1024) {
  std::string error;
  auto v = FirstBytesValidator::create(expression, max_bytes, error);
  EXPECT_TRUE(v.has_value()) << error;
  return std::move(v).value();
}

Result check(const FirstBytesValidator& v, std::string_view bytes) {
  return v.check(std::span<const std::uint8_t>(reinterpret_cast<const std::uint8_t*>(bytes.data()),
                                               bytes.size()));
}

TEST(FirstBytesValidatorTest, HttpMethods) {
  // Verifies match, need_more and mismatch on the example expression.
  const auto v = make(kHttp);
  EXPECT_EQ(check(v, "GET / HTTP/1.1\r\n"), Result::match);
  EXPECT_EQ(check(v, "OPTIONS /x"), Result::match);
  EXPECT_EQ(check(v, ""), Result::need_more);
  EXPECT_EQ(check(v, "GE"), Result::need_more);
  EXPECT_EQ(check(v, "DELETE "), Result::need_more);
  EXPECT_EQ(check(v, "GX"), Result::mismatch);  // decided at the second byte
  EXPECT_EQ(check(v, "X"), Result::mismatch);
  EXPECT_EQ(check(v, "get / HTTP/1.1"), Result::mismatch);  // case-sensitive
  EXPECT_EQ(check(v, " GET /"), Result::mismatch);          // from byte 0 only
  EXPECT_EQ(check(v, std::string_view("\x16\x03\x01", 3)), Result::mismatch);
}

TEST(FirstBytesValidatorTest, ByteAtATime) {
  // Verifies every proper prefix of a matching request needs more and the whole matches.
  const auto v = make(kHttp);
  const std::string_view request = "POST /submit HTTP/1.0\r\n";
  for (std::size_t n = 0; n < 6; ++n) {
    EXPECT_EQ(check(v, request.substr(0, n)), Result::need_more) << n;
  }
  for (std::size_t n = 6; n <= request.size(); ++n) {
    EXPECT_EQ(check(v, request.substr(0, n)), Result::match) << n;
  }
}

TEST(FirstBytesValidatorTest, CaseInsensitiveFlag) {
  // Verifies "(?i)" makes the expression case-insensitive (Boost.Regex's own syntax).
  const auto v = make("(?i)^(get|post) /");
  EXPECT_EQ(check(v, "GET /"), Result::match);
  EXPECT_EQ(check(v, "pOsT /"), Result::match);
  EXPECT_EQ(check(v, "PUT /"), Result::mismatch);
}

TEST(FirstBytesValidatorTest, MaxBytes) {
  // Verifies no full match within max_bytes is a mismatch, and bytes beyond it are ignored.
  const auto v = make("^[a-z]*END", 16);
  EXPECT_EQ(v.max_bytes(), 16u);
  EXPECT_EQ(check(v, "abcEND"), Result::match);
  EXPECT_EQ(check(v, std::string(15, 'a')), Result::need_more);
  EXPECT_EQ(check(v, std::string(16, 'a')), Result::mismatch);
  EXPECT_EQ(check(v, std::string(13, 'a') + "END"), Result::match);   // exactly 16
  EXPECT_EQ(check(v, std::string(14, 'a') + "END"), Result::mismatch);  // END past byte 16
}

TEST(FirstBytesValidatorTest, EndOfBytesIsNotEndOfStream) {
  // Verifies '$' and '\z' do not match at the end of the bytes seen: the client may send more.
  const auto dollar = make("^PING$");
  EXPECT_EQ(check(dollar, "PING"), Result::need_more);
  EXPECT_EQ(check(dollar, "PING\n"), Result::match);
  EXPECT_EQ(check(dollar, "PINGX"), Result::mismatch);
  const auto z = make("^PING\\z", 8);
  EXPECT_EQ(check(z, "PING"), Result::need_more);
  EXPECT_EQ(check(z, "PINGPONG"), Result::mismatch);
}

TEST(FirstBytesValidatorTest, BinaryBytes) {
  // Verifies NUL and high bytes are matched as bytes.
  const auto v = make("^\\x00\\x01[\\x80-\\xff]+\\x00", 64);
  EXPECT_EQ(check(v, std::string_view("\x00\x01\x90\xff\x00", 5)), Result::match);
  EXPECT_EQ(check(v, std::string_view("\x00\x01\x90", 3)), Result::need_more);
  EXPECT_EQ(check(v, std::string_view("\x00\x02", 2)), Result::mismatch);
}

TEST(FirstBytesValidatorTest, BadExpression) {
  // Verifies a bad expression or max_bytes of 0 is refused with a message.
  for (std::string_view bad : {"(", "[a-", "a{2,1}", "(?<", "*a"}) {
    std::string error;
    EXPECT_FALSE(FirstBytesValidator::create(bad, 64, error).has_value()) << bad;
    EXPECT_NE(error.find(std::string(bad)), std::string::npos) << error;
  }
  std::string error;
  EXPECT_FALSE(FirstBytesValidator::create("^a", 0, error).has_value());
  EXPECT_FALSE(error.empty());
}

TEST(FirstBytesValidatorTest, HostileInputDoesNotThrow) {
  // Verifies a pathological expression on hostile bytes gives an answer, never an exception.
  const auto v = make("^(a+)+b", 4096);
  const std::string input = std::string(4000, 'a') + "c";
  Result r = Result::match;
  EXPECT_NO_THROW(r = check(v, input));
  EXPECT_EQ(r, Result::mismatch);
}

}  // namespace
}  // namespace pb::net
