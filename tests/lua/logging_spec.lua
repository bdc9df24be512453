-- Server notices and warnings and pgspout's own messages reach the Lua log
-- hook (pgspout.set_log) at matching levels, with the stream's label.
local H = require "helper"
local pgspout = H.pgspout

local RAISE_ALL = [[DO $$ BEGIN
  PERFORM set_config('client_min_messages', 'debug1', true);
  RAISE DEBUG 'pgs-debug %', 1;
  RAISE LOG 'pgs-log %', 2;
  RAISE INFO 'pgs-info %', 3;
  RAISE NOTICE 'pgs-notice %', 4;
  RAISE WARNING 'pgs-warning %', 5;
END $$]]

describe("logging", function()
    local conn, got
    local function hook(rec)
        if rec.message:find("pgs-", 1, true) or rec.message:find("ROLLBACK", 1, true) then
            got[#got + 1] = { rec.level, rec.levelno, rec.message, rec.label or "-", rec.severity or "-",
                              rec.sqlstate or "-" }
        end
    end
    setup(function() conn = assert(pgspout.connect(H.dsn)) end)
    teardown(function() pgspout.set_log(nil); conn:close() end)
    before_each(function() got = {}; pgspout.set_log(hook) end)

    it("gives server messages at their levels with the stream's label", function()
        local s = assert(conn:stream(RAISE_ALL, nil, { label = "etl_users" }))
        for _ in s:rows() do end
        s:close()
        assert.are.same({
            { "debug", 0, "server DEBUG: pgs-debug 1", "etl_users", "DEBUG", "00000" },
            { "info", 1, "server LOG: pgs-log 2", "etl_users", "LOG", "00000" },
            { "info", 1, "server INFO: pgs-info 3", "etl_users", "INFO", "00000" },
            { "info", 1, "server NOTICE: pgs-notice 4", "etl_users", "NOTICE", "00000" },
            { "warning", 2, "server WARNING: pgs-warning 5", "etl_users", "WARNING", "01000" },
        }, got)
    end)

    it("follows the stream's label and gives pgspout's own warnings", function()
        assert(conn:stream("DO $$ BEGIN RAISE NOTICE 'pgs-a'; END $$", nil, { label = "a" })):close()
        assert(conn:stream("DO $$ BEGIN RAISE WARNING 'pgs-b'; END $$")):close()
        H.query("BEGIN", nil, nil, conn)
        local s, err = conn:stream("SELECT 1 / 0")
        assert.is_nil(s)
        assert.truthy(err:find("division by zero", 1, true))
        local tag = assert(conn:stream("COMMIT", nil, { label = "tx" }))
        for _ in tag:rows() do end
        assert.are.equal("ROLLBACK", tag:command_tag())
        tag:close()
        assert.are.same({
            { "info", 1, "server NOTICE: pgs-a", "a", "NOTICE", "00000" },
            { "warning", 2, "server WARNING: pgs-b", "default", "WARNING", "01000" },
            { "warning", 2, "COMMIT ended in ROLLBACK (the transaction had failed)", "tx", "-", "-" },
        }, got)
    end)

    it("reaches the hook from registry streams, and a failing hook is ignored", function()
        local id = assert(pgspout.registry_open(H.dsn, "DO $$ BEGIN RAISE WARNING 'pgs-r'; END $$", nil,
                                                { label = "reg" }))
        while pgspout.registry_fetch(id) do end
        pgspout.registry_close(id)
        assert.are.same({ { "warning", 2, "server WARNING: pgs-r", "reg", "WARNING", "01000" } }, got)
        pgspout.set_log(function() error("hook failed") end)
        local s = assert(conn:stream("DO $$ BEGIN RAISE WARNING 'pgs-x'; END $$"))
        for _ in s:rows() do end
        s:close()
        assert.has_error(function() pgspout.set_log(5) end)
    end)
end)
