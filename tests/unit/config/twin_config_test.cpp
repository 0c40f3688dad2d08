// [twin]: the link to the Redis server shared by twin balancers, validated without connecting.
#include <gtest/gtest.h>

#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <string>

#include "load_test_support.hpp"
#include "protobalance/config/config.hpp"

namespace pb::config {
namespace {

using test::describe;
using test::load;
using test::single_error;

namespace fs = std::filesystem;

// A password file in a fresh temporary folder, removed at the end of the test.
class PasswordFile {
 public:
  explicit PasswordFile(const std::string& content) {
    std::string pattern = (fs::temp_directory_path() / "pb-twin-XXXXXX").string();
    dir_ = ::mkdtemp(pattern.data());
    path_ = dir_ / "redis.pass";
    std::ofstream(path_, std::ios::binary) << content;
  }
  ~PasswordFile() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  PasswordFile(const PasswordFile&) = delete;
  PasswordFile& operator=(const PasswordFile&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path dir_;
  fs::path path_;
};

std::string local_host_name() {
  std::array<char, 256> buffer{};
  EXPECT_EQ(::gethostname(buffer.data(), buffer.size() - 1), 0);
  return buffer.data();
}

TEST(TwinConfig, AbsentSectionLeavesTwinsOff) {
  // Verifies that without [twin] the link is off and the defaults are the documented ones.
  const LoadResult result = load("");
  ASSERT_TRUE(result.config) << describe(result);
  const TwinConfig& twin = result.config->twin;
  EXPECT_FALSE(twin.enabled);
  EXPECT_EQ(twin.host, "127.0.0.1");
  EXPECT_EQ(twin.port, 6379);
  EXPECT_EQ(twin.key_prefix, "protobalance:");
  EXPECT_EQ(twin.lookup_timeout.count(), 50);
}

TEST(TwinConfig, EmptySectionTakesDefaultsAndTheHostName) {
  // Verifies that an empty [twin] enables the link with the defaults and instance = host name.
  const LoadResult result = load("[twin]\n");
  ASSERT_TRUE(result.config) << describe(result);
  const TwinConfig& twin = result.config->twin;
  EXPECT_TRUE(twin.enabled);
  EXPECT_EQ(twin.redis, "127.0.0.1:6379");
  EXPECT_EQ(twin.database, 0);
  EXPECT_TRUE(twin.password_file.empty());
  EXPECT_EQ(twin.instance, local_host_name());
}

TEST(TwinConfig, ReadsEveryKey) {
  // Verifies every key: address, password file with a trailing newline, database, prefix,
  // instance and lookup timeout.
  const PasswordFile pass("s3cret\n");
  const LoadResult result = load(R"([twin]
redis = "redis.example:6380"
password_file = ")" + pass.path().string() + R"("
database = 3
key_prefix = "eu1:"
instance = "lb-a"
lookup_timeout = "120ms"
)");
  ASSERT_TRUE(result.config) << describe(result);
  const TwinConfig& twin = result.config->twin;
  EXPECT_EQ(twin.host, "redis.example");
  EXPECT_EQ(twin.port, 6380);
  EXPECT_TRUE(twin.unix_socket.empty());
  EXPECT_EQ(twin.password_file, pass.path());
  EXPECT_EQ(twin.database, 3);
  EXPECT_EQ(twin.key_prefix, "eu1:");
  EXPECT_EQ(twin.instance, "lb-a");
  EXPECT_EQ(twin.lookup_timeout.count(), 120);
  std::string error;
  EXPECT_EQ(read_password_file(pass.path(), error), "s3cret") << error;
}

TEST(TwinConfig, AcceptsIpv6AndUnixSocketAddresses) {
  // Verifies the [v6]:port form and unix:PATH, relative paths taken from the file's folder.
  LoadResult result = load("[twin]\nredis = \"[::1]:7000\"\n");
  ASSERT_TRUE(result.config) << describe(result);
  EXPECT_EQ(result.config->twin.host, "::1");
  EXPECT_EQ(result.config->twin.port, 7000);

  result = load("[twin]\nredis = \"unix:run/redis.sock\"\n");
  ASSERT_TRUE(result.config) << describe(result);
  EXPECT_EQ(result.config->twin.unix_socket, "/etc/pb/run/redis.sock");
  EXPECT_TRUE(result.config->twin.host.empty());
}

TEST(TwinConfig, RejectsBadAddresses) {
  // Verifies that malformed addresses are reported at the value with what is expected.
  EXPECT_TRUE(single_error(load("[twin]\nredis = \"localhost\"\n"), 2, 9, "expected \"host:port\""));
  EXPECT_TRUE(single_error(load("[twin]\nredis = \"h:0\"\n"), 2, 9, "from 1 to 65535"));
  EXPECT_TRUE(single_error(load("[twin]\nredis = \"h:70000\"\n"), 2, 9, "from 1 to 65535"));
  EXPECT_TRUE(single_error(load("[twin]\nredis = \"[zz]:1\"\n"), 2, 9, "not an IPv6 address"));
  EXPECT_TRUE(single_error(load("[twin]\nredis = \"::1:6379\"\n"), 2, 9, "not a valid address"));
  EXPECT_TRUE(single_error(load("[twin]\nredis = \"unix:\"\n"), 2, 9, "path is empty"));
  EXPECT_TRUE(single_error(load("[twin]\nredis = \":6379\"\n"), 2, 9, "host is missing"));
}

TEST(TwinConfig, RejectsBadValues) {
  // Verifies range and type checks of database, lookup_timeout and instance, and unknown keys.
  EXPECT_TRUE(single_error(load("[twin]\ndatabase = -1\n"), 2, 12, "from 0 to"));
  EXPECT_TRUE(single_error(load("[twin]\nlookup_timeout = \"soon\"\n"), 2, 18, "invalid duration"));
  EXPECT_TRUE(single_error(load("[twin]\nlookup_timeout = \"0ms\"\n"), 2, 18, "greater than 0s"));
  EXPECT_TRUE(single_error(load("[twin]\ninstance = \"a b\"\n"), 2, 12, "instance must use"));
  EXPECT_TRUE(single_error(load("[twin]\nhost = \"x\"\n"), 2, 1, "unknown key 'host' in [twin]"));
  EXPECT_TRUE(single_error(load("twin = 1\n"), 1, 8, "twin must be a table"));
}

TEST(TwinConfig, RejectsUnreadableOrEmptyPasswordFiles) {
  // Verifies that a missing file, an empty password and a two-line file are reported.
  EXPECT_TRUE(single_error(load("[twin]\npassword_file = \"/nonexistent/pb.pass\"\n"), 2, 17,
                           "password_file: cannot read /nonexistent/pb.pass"));
  const PasswordFile empty("\n");
  EXPECT_TRUE(single_error(load("[twin]\npassword_file = \"" + empty.path().string() + "\"\n"), 2,
                           17, "is empty"));
  const PasswordFile two("a\nb\n");
  EXPECT_TRUE(single_error(load("[twin]\npassword_file = \"" + two.path().string() + "\"\n"), 2,
                           17, "more than one line"));
  const PasswordFile crlf("pw\r\n");
  std::string error;
  EXPECT_EQ(read_password_file(crlf.path(), error), "pw") << error;
}

}  // namespace
}  // namespace pb::config
