// [admin]: where the daemon's admin API listens (a Unix socket) and pbadmin finds it.
#include <gtest/gtest.h>

#include <string>

#include "load_test_support.hpp"
#include "protobalance/config/config.hpp"

// As in config_errors_test.cpp, a value in `key = value` starts at column len(key) + 4.

namespace pb::config {
namespace {

using test::describe;
using test::load;
using test::single_error;

TEST(AdminConfig, DefaultSocketIsInStateDir) {
  // Verifies that without [admin] the socket is admin.sock in the (resolved) state_dir.
  LoadResult result = load("");
  ASSERT_TRUE(result.config) << describe(result);
  EXPECT_EQ(result.config->admin.socket, "/etc/pb/var/admin.sock");
  EXPECT_EQ(result.config->admin.socket_pos.line, 0u);

  result = load("[service]\nstate_dir = \"/srv/pb\"\n");
  ASSERT_TRUE(result.config) << describe(result);
  EXPECT_EQ(result.config->admin.socket, "/srv/pb/admin.sock");
}

TEST(AdminConfig, RelativeSocketIsUnderStateDirAbsoluteIsKept) {
  // Verifies that a relative socket path is taken relative to state_dir (not to the file's
  // folder), normalised, and that an absolute path is used as written.
  LoadResult result = load("[service]\nstate_dir = \"/srv/pb\"\n[admin]\nsocket = \"run/../ctl.sock\"\n");
  ASSERT_TRUE(result.config) << describe(result);
  EXPECT_EQ(result.config->admin.socket, "/srv/pb/ctl.sock");
  EXPECT_EQ(result.config->admin.socket_pos.line, 4u);
  EXPECT_EQ(result.config->admin.socket_pos.column, 10u);

  result = load("[admin]\nsocket = \"/run/protobalance/admin.sock\"\n");
  ASSERT_TRUE(result.config) << describe(result);
  EXPECT_EQ(result.config->admin.socket, "/run/protobalance/admin.sock");
}

TEST(AdminConfig, ReportsBadValuesAtTheValue) {
  // Verifies that a socket that is not a string, or is empty, is an error at the value, and that
  // [admin] must be a table.
  EXPECT_TRUE(single_error(load("[admin]\nsocket = 5\n"), 2, 10,
                           "socket must be a string, got integer"));
  EXPECT_TRUE(single_error(load("[admin]\nsocket = \"\"\n"), 2, 10, "socket must not be empty"));
  EXPECT_TRUE(single_error(load("admin = \"admin.sock\"\n"), 1, 9,
                           "admin must be a table, written [admin], got string"));
}

TEST(AdminConfig, ReportsUnknownKeysInAdmin) {
  // Verifies that [admin] is as strict as every other table: a misspelt key is an error at the
  // key, listing the allowed ones.
  EXPECT_TRUE(single_error(load("[admin]\nsocket = \"a.sock\"\nmode = \"0600\"\n"), 3, 1,
                           "unknown key 'mode' in [admin]; allowed keys: socket"));
  EXPECT_TRUE(single_error(load("[admin]\npath = \"a.sock\"\n"), 2, 1,
                           "unknown key 'path' in [admin]; allowed keys: socket"));
}

TEST(AdminConfig, RefusesSocketPathsTooLongForTheKernel) {
  // Verifies that a socket path longer than a Unix socket address can hold (107 bytes) is
  // refused when the file is loaded, at the value when it was written, and that 107 bytes pass.
  const std::string dir = "/srv/" + std::string(90, 'd');  // 95 bytes
  LoadResult result = load("[admin]\nsocket = \"" + dir + "/abcdefghijkl\"\n");  // 108 bytes
  EXPECT_TRUE(single_error(result, 2, 10, "is 108 bytes long; a Unix socket path can have at most 107"))
      << describe(result);
  result = load("[admin]\nsocket = \"" + dir + "/abcdefghijk\"\n");  // 107 bytes
  ASSERT_TRUE(result.config) << describe(result);

  // The default socket under a long state_dir: no position to point at, but still refused.
  result = load("[service]\nstate_dir = \"" + dir + "/abcdefghijk\"\n");
  ASSERT_FALSE(result.config);
  ASSERT_EQ(result.errors.size(), 1u) << describe(result);
  EXPECT_EQ(result.errors[0].pos.line, 0u);
  EXPECT_NE(result.errors[0].message.find("admin socket"), std::string::npos)
      << result.errors[0].message;
}

TEST(AdminConfig, QuickModeSocketIsAbsolute) {
  // Verifies that the quick-mode configuration (which starts no admin API) still carries an
  // absolute socket path, so that nothing reads a path relative to an unknown folder.
  const auto cfg = make_quick_config(Endpoint{}, {Endpoint{}}, "round_robin", "", {});
  EXPECT_TRUE(cfg->admin.socket.is_absolute()) << cfg->admin.socket;
  EXPECT_EQ(cfg->admin.socket.filename(), "admin.sock");
}

}  // namespace
}  // namespace pb::config
