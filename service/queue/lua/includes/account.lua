-- Expects locals: tput (the throughput buckets).
--- @include "includes/num"
--- @include "includes/sliced"
-- Recent throughput: finishes and run time in 5-second buckets, the last 12 kept. Summed over
-- a script run: account_add per finish, account_flush once before the script returns (two
-- HINCRBYs a bucket per run instead of two per finish; a merged finish spans one bucket or two).
local tput_n, tput_d
RESET[#RESET + 1] = function() tput_n, tput_d = {}, {} end
local function account_add(rec, at_ms)
  local bucket = math.floor(at_ms / 5000)
  tput_n[bucket] = (tput_n[bucket] or 0) + 1
  local started = num(rec['started'] or '')
  if started then tput_d[bucket] = (tput_d[bucket] or 0) + math.max(0, at_ms - started) end
end

-- Every bucket older than the last minute's 12 (bucket - 11 up to bucket): dropped. All of
-- them, not only the one 12 back: after a pause in traffic no bucket opens 12 after the last
-- ones, and they would stay for good (a hash growing for ever, which every status read scans).
-- Run once per new bucket (at most every 5 s), over the hash's 24 fields or so.
local function drop_stale_buckets(bucket)
  local stale = {}
  for _, field in ipairs(redis.call('HKEYS', tput)) do
    local b = tonumber(string.sub(field, 3))
    if b and b < bucket - 11 then stale[#stale + 1] = field end
  end
  sliced('HDEL', tput, stale)  -- in slices: a hash grown before this fix may hold thousands
end

local function account_flush()
  for bucket, n in pairs(tput_n) do
    -- The first count in a bucket (the field was new): the buckets that fell out go.
    if redis.call('HINCRBY', tput, 'n:' .. bucket, n) == n then drop_stale_buckets(bucket) end
    local d = tput_d[bucket]
    if d then redis.call('HINCRBY', tput, 'd:' .. bucket, d) end
  end
  tput_n, tput_d = {}, {}
end
