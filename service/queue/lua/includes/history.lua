-- Expects locals: hist_s, hist_m (the operation's history rings).
-- The console's history at a fixed size: counters per second for 15 minutes (hist_s) and per
-- minute for 24 hours (hist_m, with wait and run time histograms), each a ring of slots in one
-- hash. A slot's 'b:' field names the bucket it holds; the first write of a newer bucket
-- clears the slot, so the hashes never grow past their slots, whatever the traffic. Fields:
-- s submitted, ok succeeded, f failed, c canceled, q queue depth (the last sample; per minute,
-- the first of its last second), w<i>/r<i> wait/run times in bin i (upper bounds in
-- HIST_BOUNDS, then one open bin). A script run's events are summed in Lua and written once at
-- its end (history_flush), so a merged run of many calls costs a few commands, not a few each.
local HIST_BOUNDS = {5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000}
local HIST_SEC = {slots = 900, width = 1000, ttl = 960, clear = {'s', 'ok', 'f', 'c', 'q'}}
local HIST_MIN = {slots = 1440, width = 60000, ttl = 90000, clear = {'s', 'ok', 'f', 'c', 'q'}}
for i = 0, #HIST_BOUNDS do
  HIST_MIN.clear[#HIST_MIN.clear + 1] = 'w' .. i
  HIST_MIN.clear[#HIST_MIN.clear + 1] = 'r' .. i
end
local hist_run = {}  -- this run's events: [second] = {n = {field = count}, w = {bin = count}, r = …}

-- The slot suffix (':<slot>') of the bucket holding at_ms and whether it was opened now
-- (cleared of an older bucket); nil for a write so late that its slot holds a newer bucket.
local function hist_slot(ring, spec, at_ms)
  local bucket = math.floor(at_ms / spec.width)
  local slot = ':' .. (bucket % spec.slots)
  local held = tonumber(redis.call('HGET', ring, 'b' .. slot) or '-1')
  if held == bucket then return slot, false end
  if held > bucket then return nil, false end
  local fields = {}
  for i, name in ipairs(spec.clear) do fields[i] = name .. slot end
  redis.call('HDEL', ring, unpack(fields))
  redis.call('HSET', ring, 'b' .. slot, bucket)
  redis.call('EXPIRE', ring, spec.ttl)
  return slot, true
end

local function hist_bin(ms)
  for i, bound in ipairs(HIST_BOUNDS) do
    if ms <= bound then return i - 1 end
  end
  return #HIST_BOUNDS
end

local function hist_add(t, k)
  t[k] = (t[k] or 0) + 1
end

-- Count one event ('s', 'ok', 'f' or 'c') at at_ms; a finish also gives its wait (created to
-- started) and run (started to finished) times in ms.
local function history(field, at_ms, wait_ms, run_ms)
  local second = math.floor(at_ms / 1000)
  local h = hist_run[second]
  if not h then
    h = {n = {}, w = {}, r = {}}
    hist_run[second] = h
  end
  hist_add(h.n, field)
  if wait_ms then hist_add(h.w, hist_bin(wait_ms)) end
  if run_ms then hist_add(h.r, hist_bin(run_ms)) end
end

-- Write this run's events (if any), with the queue's depth now.
local function history_flush(pending_key)
  if next(hist_run) == nil then return end
  local depth = redis.call('ZCARD', pending_key)
  for second, h in pairs(hist_run) do
    local slot, opened = hist_slot(hist_s, HIST_SEC, second * 1000)
    if slot then
      for field, n in pairs(h.n) do redis.call('HINCRBY', hist_s, field .. slot, n) end
      redis.call('HSET', hist_s, 'q' .. slot, depth)
    end
    -- A second already open has its minute open too: no check needed.
    local mslot = (slot and not opened) and (':' .. (math.floor(second / 60) % HIST_MIN.slots))
      or hist_slot(hist_m, HIST_MIN, second * 1000)
    if mslot then
      for field, n in pairs(h.n) do redis.call('HINCRBY', hist_m, field .. mslot, n) end
      for bin, n in pairs(h.w) do redis.call('HINCRBY', hist_m, 'w' .. bin .. mslot, n) end
      for bin, n in pairs(h.r) do redis.call('HINCRBY', hist_m, 'r' .. bin .. mslot, n) end
      if opened then redis.call('HSET', hist_m, 'q' .. mslot, depth) end
    end
  end
  hist_run = {}
end
