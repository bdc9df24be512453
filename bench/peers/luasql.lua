-- luasql-postgres: con:execute() then cur:fetch() - luasql runs the query
-- with PQexec, so the whole result is held in memory before the first fetch.
--   lua5.1|luajit luasql.lua DSN SQL      prints rows=N values=V types=T1,...
-- (T: Lua type of each column's first non-NULL value in the first 10 rows)
--   lua5.1|luajit luasql.lua --version
local driver = require "luasql.postgres"
if arg[1] == "--version" then
  print((driver._VERSION or "LuaSQL") .. " on " .. (jit and jit.version or _VERSION))
  return
end
local dsn, sql = arg[1], arg[2]
assert(dsn and sql, "usage: luasql.lua DSN SQL")
local env = assert(driver.postgres())
-- a conninfo string or URI in the database argument is passed to libpq as is
local con = assert(env:connect(dsn))
local cur = assert(con:execute(sql))
local ncols = #cur:getcolnames()
local rows, vals = 0, 0
local types = {}
local row = cur:fetch({}, "n")
while row do
  rows = rows + 1
  if rows <= 10 then
    for i = 1, ncols do
      if types[i] == nil and row[i] ~= nil then types[i] = type(row[i]) end
    end
  end
  for i = 1, ncols do
    if row[i] ~= nil then vals = vals + 1 end
  end
  row = cur:fetch(row, "n")
end
cur:close()
con:close()
env:close()
for i = 1, ncols do types[i] = types[i] or "NULL" end
print(("rows=%d values=%d types=%s"):format(rows, vals, table.concat(types, ",")))
