-- Expects locals: hist_s, hist_m (the operation's history rings).
-- The console's history at a fixed size: counters per second for 15 minutes (hist_s) and per
-- minute for 24 hours (hist_m, with wait and run time histograms), each a ring of slots in one
-- hash. A slot's 'b:' field names the bucket it holds; the first write of a newer bucket
-- clears the slot, so the hashes never grow past their slots, whatever the traffic. Fields:
-- s submitted, ok succeeded, f failed, c canceled, q queue depth (the last sample; per minute,
-- the first of its last second), w<i>/r<i> wait/run times in bin i (upper bounds below, then
-- one open bin). A script run's events are summed in locals and written once at its end
-- (history_flush), so a merged run of many calls costs a few commands, not a few each; nothing
-- here allocates per call but the histogram tables of a run that finishes requests.
local hist_second, hist_counts, hist_waits, hist_runs
RESET[#RESET + 1] = function()
  hist_second, hist_counts, hist_waits, hist_runs = nil, nil, nil, nil
end

-- The slot suffix (':<slot>') of the bucket holding at_ms and whether it was opened now
-- (cleared of an older bucket); nil for a write so late that its slot holds a newer bucket.
local function hist_slot(ring, slots, width, ttl, at_ms, histograms)
  local bucket = math.floor(at_ms / width)
  local slot = ':' .. (bucket % slots)
  local held = tonumber(redis.call('HGET', ring, 'b' .. slot) or '-1')
  if held == bucket then return slot, false end
  if held > bucket then return nil, false end
  local fields = {'s' .. slot, 'ok' .. slot, 'f' .. slot, 'c' .. slot, 'q' .. slot}
  if histograms then
    for i = 0, 14 do
      fields[#fields + 1] = 'w' .. i .. slot
      fields[#fields + 1] = 'r' .. i .. slot
    end
  end
  redis.call('HDEL', ring, unpack(fields))
  redis.call('HSET', ring, 'b' .. slot, bucket)
  redis.call('EXPIRE', ring, ttl)
  return slot, true
end

-- The histogram bin of a time in ms: upper bounds 5, 10, 25, 50, 100, 250, 500 ms, 1, 2.5, 5,
-- 10, 30, 60, 300 s (as service/queue/history.py's BOUNDS_MS), then 14 for the rest.
local function hist_bin(ms)
  if ms <= 100 then
    if ms <= 5 then return 0 elseif ms <= 10 then return 1 elseif ms <= 25 then return 2 end
    if ms <= 50 then return 3 end
    return 4
  end
  if ms <= 250 then return 5 elseif ms <= 500 then return 6 elseif ms <= 1000 then return 7 end
  if ms <= 2500 then return 8 elseif ms <= 5000 then return 9 elseif ms <= 10000 then return 10 end
  if ms <= 30000 then return 11 elseif ms <= 60000 then return 12 elseif ms <= 300000 then return 13 end
  return 14
end

local history_flush

-- Count one event ('s', 'ok', 'f' or 'c') at at_ms; a finish also gives its wait (created to
-- started) and run (started to finished) times in ms. pending_key: for the depth sample.
local function history(pending_key, field, at_ms, wait_ms, run_ms)
  local second = math.floor(at_ms / 1000)
  if hist_second ~= second then
    if hist_second then history_flush(pending_key) end  -- a run spanning seconds: rare
    hist_second, hist_counts = second, {}
  end
  hist_counts[field] = (hist_counts[field] or 0) + 1
  if wait_ms then
    local bin = hist_bin(wait_ms)
    hist_waits = hist_waits or {}
    hist_waits[bin] = (hist_waits[bin] or 0) + 1
  end
  if run_ms then
    local bin = hist_bin(run_ms)
    hist_runs = hist_runs or {}
    hist_runs[bin] = (hist_runs[bin] or 0) + 1
  end
end

-- Write this run's events (if any), with the queue's depth now (depth: when the caller has
-- just asked).
history_flush = function(pending_key, depth)
  if not hist_second then return end
  depth = depth or redis.call('ZCARD', pending_key)
  local at_ms = hist_second * 1000
  local slot, opened = hist_slot(hist_s, 900, 1000, 960, at_ms, false)
  if slot then
    for field, n in pairs(hist_counts) do redis.call('HINCRBY', hist_s, field .. slot, n) end
    redis.call('HSET', hist_s, 'q' .. slot, depth)
  end
  -- A second already open has its minute open too: no check needed.
  local mslot = (slot and not opened) and (':' .. (math.floor(hist_second / 60) % 1440))
    or hist_slot(hist_m, 1440, 60000, 90000, at_ms, true)
  if mslot then
    for field, n in pairs(hist_counts) do redis.call('HINCRBY', hist_m, field .. mslot, n) end
    for bin, n in pairs(hist_waits or {}) do redis.call('HINCRBY', hist_m, 'w' .. bin .. mslot, n) end
    for bin, n in pairs(hist_runs or {}) do redis.call('HINCRBY', hist_m, 'r' .. bin .. mslot, n) end
    if opened then redis.call('HSET', hist_m, 'q' .. mslot, depth) end
  end
  hist_second, hist_counts, hist_waits, hist_runs = nil, nil, nil, nil
end
