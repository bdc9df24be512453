-- LuaRocks spec for the pgspout Lua module (LuaJIT / OpenResty / Lua 5.1).
--
-- From a checkout, at the repository root:
--     luarocks make bindings/lua/pgspout-scm-1.rockspec
-- (OpenResty: /usr/local/openresty/luajit/bin/luarocks, or `opm`-style trees
-- with --tree). Needs a C compiler, CMake >= 3.18, SWIG >= 4 and libpq
-- (headers and library) on the build machine; at run time only libpq.
rockspec_format = "3.0"
package = "pgspout"
version = "scm-1"

source = {
   url = "git+https://github.com/pgspout/pgspout.git",
}

description = {
   summary = "Stream PostgreSQL query results into Lua without holding the whole result",
   detailed = [[
pgspout streams query results row by row (or chunk by chunk) with memory,
row, time and pause limits, per-stream stats and Prometheus metrics, pause /
resume / cancel, and a process-wide stream registry for OpenResty's
ngx.run_worker_thread. `for row in s:rows() do ... end`.
]],
   homepage = "https://github.com/pgspout/pgspout",
   license = "MIT",
   labels = { "postgresql", "database", "streaming", "openresty" },
}

dependencies = {
   "lua >= 5.1, < 5.2",   -- the Lua 5.1 ABI: LuaJIT 2.1, OpenResty, PUC Lua 5.1
}

-- libpq is found by CMake (pkg-config, then FindPostgreSQL), which knows
-- distribution layouts such as Debian's /usr/include/postgresql.

build = {
   type = "command",
   -- CMake builds the SWIG wrapper and links the static core into the module
   build_command = [[
cmake -S . -B build-luarocks -DCMAKE_BUILD_TYPE=Release \
  -DPGSPOUT_BUILD_LUA=ON -DPGSPOUT_BUILD_TESTS=OFF -DPGSPOUT_BUILD_CLI=OFF \
  "-DPGSPOUT_LUA_INCLUDE_DIR=$(LUA_INCDIR)" \
  && cmake --build build-luarocks --target pgspout_lua
]],
   install_command = [[
mkdir -p "$(LIBDIR)" "$(LUADIR)" \
  && cp build-luarocks/bindings/lua/pgspout_core.so "$(LIBDIR)/" \
  && cp bindings/lua/pgspout.lua "$(LUADIR)/"
]],
}
