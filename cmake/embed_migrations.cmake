# Writes OUT, a C++ file holding every DIR/NNNN_*.sql as a raw string, in file-name order.
# Invoked at build time: cmake -DOUT=... -DDIR=... -P embed_migrations.cmake
file(GLOB files ${DIR}/*.sql)
list(SORT files)
set(body "")
foreach(f IN LISTS files)
  get_filename_component(name ${f} NAME)
  file(READ ${f} sql)
  string(APPEND body "    {\"${name}\", R\"pbsql(${sql})pbsql\"},\n")
endforeach()
file(WRITE ${OUT}.tmp "// Generated from migrations/*.sql by cmake/embed_migrations.cmake; do not edit.
#include \"protobalance/state/migrations.hpp\"

namespace pb::state {
const std::vector<Migration>& migrations() {
  static const std::vector<Migration> all = {
${body}  };
  return all;
}
}  // namespace pb::state
")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
