-- pgspout's Lua module: for row in s:rows() do ... end
--   luajit|lua5.1 pgspout_lua.lua DSN SQL [KEY=VALUE...]
--     prints rows=N values=V types=T1,... (T: Lua type of each column's first
--     non-NULL value in the first 10 rows)
--   luajit|lua5.1 pgspout_lua.lua --version
-- The runner points LUA_CPATH/LUA_PATH at the build tree.
local pgspout = require "pgspout"
if arg[1] == "--version" then
  local v = pgspout.version or pgspout._VERSION or "?"
  if type(v) == "function" then v = v() end
  print("pgspout " .. tostring(v) .. " on " .. (jit and jit.version or _VERSION))
  return
end
local dsn, sql = arg[1], arg[2]
assert(dsn and sql, "usage: pgspout_lua.lua DSN SQL [KEY=VALUE...]")
local opts = {}
for i = 3, #arg do
  local k, v = arg[i]:match("^([^=]+)=(.*)$")
  assert(k, "bad option " .. arg[i])
  opts[k] = tonumber(v) or v
end
local conn = assert(pgspout.connect(dsn))
local s = assert(conn:stream(sql, nil, opts))
local null = pgspout.null
local rows, vals = 0, 0
local types, ncols = {}, 0
for row in s:rows() do
  rows = rows + 1
  if rows <= 10 then
    ncols = #row
    for i = 1, ncols do
      if types[i] == nil and row[i] ~= null then types[i] = type(row[i]) end
    end
  end
  for i = 1, #row do
    if row[i] ~= null then vals = vals + 1 end
  end
end
s:close()
conn:close()
for i = 1, ncols do types[i] = types[i] or "NULL" end
print(("rows=%d values=%d types=%s"):format(rows, vals, table.concat(types, ",")))
