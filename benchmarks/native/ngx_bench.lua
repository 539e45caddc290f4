-- ngx_bench.lua - the per-op workloads of benchmarks/bench.py, in Lua, on
-- ngx.shared.DICT (nginx + lua-nginx-module, LuaJIT).
--
-- Served by the nginx that benchmarks/native_peers.py starts on 127.0.0.1.
-- GET /bench?nkeys=..&vsize=..&reps=..&target_ns=..&min_ops=..&max_ops=..
--            &batch_cap=..&seed=..
-- runs every op on one data set inside this request and answers one JSON
-- object per line, as apcu_bench.php does:
--   {"nkeys":..,"vsize":..,"op":"get_hit","n":N,"raw":[ns,...],"empty":[ns,...]}
-- GET /features?nkeys=..&vsize=..&<same parameters> runs the feature ops
-- that ngx.shared.DICT has (add, replace, incr with init, lpush + rpop,
-- llen, get_stale) on the pools of benchmarks/features.py, answering the
-- same JSON lines.
-- GET /capacity?klen=..&vlen=.. fills the 64 MiB dict "cap" until safe_set
-- reports no memory and answers {"count":..}.
--
-- Loops are timed inside Lua with clock_gettime(CLOCK_MONOTONIC) through
-- the LuaJIT FFI (ns resolution); if the FFI is missing, ngx.update_time()
-- + ngx.now() is used (ms resolution, so loops are made long enough).
-- The HTTP round trip is never part of a timed loop.

local M = {}

local dict = ngx.shared.bench

local now_ns
do
    local ok, ffi = pcall(require, "ffi")
    if ok then
        pcall(ffi.cdef, [[
            typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
            int clock_gettime(int clk_id, bench_timespec *tp);
        ]])
        local ts = ffi.new("bench_timespec")
        local C = ffi.C
        now_ns = function()
            C.clock_gettime(1, ts) -- CLOCK_MONOTONIC
            return tonumber(ts.tv_sec) * 1e9 + tonumber(ts.tv_nsec)
        end
        M.clock = "clock_gettime(CLOCK_MONOTONIC) via LuaJIT FFI"
    else
        now_ns = function()
            ngx.update_time()
            return ngx.now() * 1e9
        end
        M.clock = "ngx.update_time() + ngx.now() (ms resolution)"
    end
end

local function key_name(prefix, i)
    return string.format("%s:%012d", prefix, i) -- 16 bytes, as in bench.py
end

local function shuffle(t)
    for i = #t, 2, -1 do
        local j = math.random(i)
        t[i], t[j] = t[j], t[i]
    end
end

local function cycle(keys, n)
    local out, m = {}, #keys
    for i = 1, n do
        out[i] = keys[(i - 1) % m + 1]
    end
    return out
end

local function slice(t, n)
    local out = {}
    for i = 1, n do
        out[i] = t[i]
    end
    return out
end

-- The timed loops. Each is its own function so that LuaJIT traces it alone.
local function loop_empty(ops)
    local n = #ops
    local t0 = now_ns()
    for i = 1, n do
        local _ = ops[i]
    end
    return now_ns() - t0
end

local function loop_get(ops)
    local n = #ops
    local t0 = now_ns()
    for i = 1, n do
        dict:get(ops[i])
    end
    return now_ns() - t0
end

local function loop_set(ops, v)
    local n = #ops
    local t0 = now_ns()
    for i = 1, n do
        dict:set(ops[i], v)
    end
    return now_ns() - t0
end

local function loop_incr(ops)
    local n = #ops
    local t0 = now_ns()
    for i = 1, n do
        dict:incr(ops[i], 1)
    end
    return now_ns() - t0
end

local function loop_delete(ops)
    local n = #ops
    local t0 = now_ns()
    for i = 1, n do
        dict:delete(ops[i])
    end
    return now_ns() - t0
end

local function one_rep(op, n, pool, v)
    if op == "get_hit" or op == "get_miss" then
        local ops = cycle(pool, n)
        return loop_get(ops), loop_empty(ops)
    elseif op == "set" then
        local ops = cycle(pool, n)
        return loop_set(ops, v), loop_empty(ops)
    elseif op == "incr" then
        local ops = cycle(pool, n)
        return loop_incr(ops), loop_empty(ops)
    end
    -- set_new / delete: batches of at most #pool keys, each undone untimed
    local raw, empty, left = 0, 0, n
    while left > 0 do
        local batch = slice(pool, math.min(left, #pool))
        if op == "set_new" then
            raw = raw + loop_set(batch, v)
            for i = 1, #batch do
                dict:delete(batch[i])
            end
        else
            raw = raw + loop_delete(batch)
            for i = 1, #batch do
                dict:set(batch[i], v)
            end
        end
        empty = empty + loop_empty(batch)
        left = left - #batch
    end
    return raw, empty
end

local function json_list(t)
    local parts = {}
    for i = 1, #t do
        parts[i] = string.format("%.0f", t[i])
    end
    return "[" .. table.concat(parts, ",") .. "]"
end

local function reset(d)
    d:flush_all()
    d:flush_expired(0)
end

function M.bench()
    local a = ngx.req.get_uri_args()
    local nkeys, vsize = tonumber(a.nkeys), tonumber(a.vsize)
    local reps, target = tonumber(a.reps), tonumber(a.target_ns)
    local min_ops, max_ops = tonumber(a.min_ops), tonumber(a.max_ops)
    local batch_cap = tonumber(a.batch_cap)
    math.randomseed(tonumber(a.seed))
    reset(dict)
    local v = string.rep("x", vsize)
    local keys = {}
    for i = 1, nkeys do
        keys[i] = key_name("key", i - 1)
        local ok, err, forcible = dict:set(keys[i], v)
        if not ok or forcible then
            ngx.status = 500
            ngx.say("populate failed at ", i, ": ", tostring(err), " (evicting: ", tostring(forcible), ")")
            return
        end
    end
    local m = math.min(nkeys, batch_cap)
    shuffle(keys)
    -- get/set cycle over every key in random order; the other pools (misses,
    -- new keys, counters, deletes) hold min(nkeys, batch_cap) keys.
    local hit, miss, fresh, ctr = keys, {}, {}, {}
    for i = 1, m do
        miss[i] = key_name("mis", i - 1)
        fresh[i] = key_name("new", i - 1)
        ctr[i] = key_name("ctr", i - 1)
        dict:set(ctr[i], 0)
    end
    shuffle(miss)
    shuffle(fresh)
    shuffle(ctr)
    local order = { "get_hit", "get_miss", "set", "set_new", "incr", "delete" }
    local pools = { get_hit = hit, get_miss = miss, set = hit, set_new = fresh, incr = ctr, delete = slice(keys, m) }
    for _, op in ipairs(order) do
        local pool = pools[op]
        local probe = math.min(#pool, 1000)
        local raw = one_rep(op, probe, pool, v)
        local per = math.max(raw / probe, 1.0)
        local n = math.floor(math.max(min_ops, math.min(max_ops, target / per)))
        local raws, empties = {}, {}
        for r = 1, reps do
            raws[r], empties[r] = one_rep(op, n, pool, v)
        end
        ngx.say(string.format(
            '{"nkeys":%d,"vsize":%d,"op":"%s","n":%d,"raw":%s,"empty":%s,"clock":"%s"}',
            nkeys, vsize, op, n, json_list(raws), json_list(empties), M.clock))
        ngx.flush(true)
    end
    local count = #dict:get_keys(0)
    if count < nkeys + m then
        ngx.say(string.format('{"error":"entries lost: %d < %d"}', count, nkeys + m))
    end
    reset(dict)
end

-- ---------------------------------------------------------------- features
local LIST_KEY, LIST_ITEMS = "lst:000000000000", 100 -- as common.py

local function loop_add(ops, v)
    local n = #ops
    local t0 = now_ns()
    for i = 1, n do
        dict:add(ops[i], v)
    end
    return now_ns() - t0
end

local function loop_replace(ops, v)
    local n = #ops
    local t0 = now_ns()
    for i = 1, n do
        dict:replace(ops[i], v)
    end
    return now_ns() - t0
end

local function loop_get_stale(ops)
    local n = #ops
    local t0 = now_ns()
    for i = 1, n do
        dict:get_stale(ops[i])
    end
    return now_ns() - t0
end

local function loop_incr_init(ops)
    local n = #ops
    local t0 = now_ns()
    for i = 1, n do
        dict:incr(ops[i], 1, 0)
    end
    return now_ns() - t0
end

local function loop_queue(ops, v)
    local n, q = #ops, LIST_KEY
    local t0 = now_ns()
    for _ = 1, n do
        dict:lpush(q, v)
        dict:rpop(q)
    end
    return now_ns() - t0
end

local function loop_llen(ops)
    local n, q = #ops, LIST_KEY
    local t0 = now_ns()
    for _ = 1, n do
        dict:llen(q)
    end
    return now_ns() - t0
end

local function delete_all(batch)
    for i = 1, #batch do
        dict:delete(batch[i])
    end
end

-- One repetition of a feature op; with an undo, batches of at most #pool
-- keys, each undone untimed.
local function feature_rep(loop, n, pool, v, undo)
    if not undo then
        local ops = cycle(pool, n)
        return loop(ops, v), loop_empty(ops)
    end
    local raw, empty, left = 0, 0, n
    while left > 0 do
        local batch = slice(pool, math.min(left, #pool))
        raw = raw + loop(batch, v)
        undo(batch)
        empty = empty + loop_empty(batch)
        left = left - #batch
    end
    return raw, empty
end

local function check(ok, what)
    if not ok then
        ngx.say(string.format('{"error":"ngx.shared.DICT check failed: %s"}', what))
    end
end

function M.features()
    local a = ngx.req.get_uri_args()
    local nkeys, vsize = tonumber(a.nkeys), tonumber(a.vsize)
    local reps, target = tonumber(a.reps), tonumber(a.target_ns)
    local min_ops, max_ops = tonumber(a.min_ops), tonumber(a.max_ops)
    local m = math.min(nkeys, tonumber(a.batch_cap))
    math.randomseed(tonumber(a.seed))
    reset(dict)
    local v = string.rep("x", vsize)
    local keys = {}
    for i = 1, nkeys do
        keys[i] = key_name("key", i - 1)
        local ok, err = dict:safe_set(keys[i], v)
        if not ok then
            ngx.status = 500
            ngx.say("populate failed at ", i, ": ", tostring(err))
            return
        end
    end
    shuffle(keys)
    local fresh, ini = {}, {}
    for i = 1, m do
        fresh[i] = key_name("new", i - 1)
        ini[i] = key_name("ini", i - 1)
    end
    shuffle(fresh)
    shuffle(ini)
    for _ = 1, LIST_ITEMS do
        dict:rpush(LIST_KEY, v)
    end

    -- Each call once, for the result it must give.
    local chk = "chk:000000000000"
    check(dict:add(chk, v) == true, "add(new key)")
    check(dict:add(chk, "o") == false, "add(existing key)")
    check(dict:replace(chk, v) == true, "replace(existing key)")
    check(dict:replace("chk:000000000001", v) == false, "replace(missing key)")
    local val, _, stale = dict:get_stale(chk)
    check(val == v and stale == false, "get_stale(hit)")
    dict:delete(chk)
    check(dict:incr(chk, 1, 0) == 1, "incr(missing, 1, 0)")
    dict:delete(chk)
    check(dict:lpush(LIST_KEY, v) == LIST_ITEMS + 1, "lpush")
    check(dict:rpop(LIST_KEY) == v, "rpop")
    check(dict:llen(LIST_KEY) == LIST_ITEMS, "llen")

    local order = {
        { "add_new", loop_add, fresh, delete_all },
        { "add_exists", loop_add, keys },
        { "replace", loop_replace, keys },
        { "get_stale", loop_get_stale, keys },
        { "incr_init", loop_incr_init, ini, delete_all },
        { "queue", loop_queue, keys },
        { "llen", loop_llen, keys },
    }
    for _, spec in ipairs(order) do
        local op, loop, pool, undo = spec[1], spec[2], spec[3], spec[4]
        local probe = math.min(#pool, 1000)
        local raw = feature_rep(loop, probe, pool, v, undo)
        local per = math.max(raw / probe, 1.0)
        local n = math.floor(math.max(min_ops, math.min(max_ops, target / per)))
        local raws, empties = {}, {}
        for r = 1, reps do
            raws[r], empties[r] = feature_rep(loop, n, pool, v, undo)
        end
        ngx.say(string.format(
            '{"nkeys":%d,"vsize":%d,"op":"%s","n":%d,"raw":%s,"empty":%s,"clock":"%s"}',
            nkeys, vsize, op, n, json_list(raws), json_list(empties), M.clock))
        ngx.flush(true)
    end
    check(dict:llen(LIST_KEY) == LIST_ITEMS, "llen after the feature ops")
    check(#dict:get_keys(0) == nkeys + 1, "entries after the feature ops")
    reset(dict)
end

function M.capacity()
    local a = ngx.req.get_uri_args()
    local klen, vlen = tonumber(a.klen), tonumber(a.vlen)
    local cap = ngx.shared.cap
    reset(cap)
    local v = string.rep("v", vlen)
    local count = 0
    while true do
        local digits = tostring(count)
        local key = string.rep("0", klen - #digits) .. digits -- klen bytes
        local ok = cap:safe_set(key, v)
        if not ok then
            break
        end
        count = count + 1
    end
    reset(cap)
    ngx.say(string.format('{"count":%d}', count))
end

return M
