-- Expects locals: tput (the throughput buckets).
-- Recent throughput: finishes and run time in 5-second buckets, the last 12 kept. Summed over
-- a script run: account_add per finish, account_flush once before the script returns (two
-- HINCRBYs a bucket per run instead of two per finish; a merged finish spans one bucket or two).
local tput_n, tput_d = {}, {}
local function account_add(rec, at_ms)
  local bucket = math.floor(at_ms / 5000)
  tput_n[bucket] = (tput_n[bucket] or 0) + 1
  local started = tonumber(rec['started'] or '')
  if started then tput_d[bucket] = (tput_d[bucket] or 0) + math.max(0, at_ms - started) end
end

local function account_flush()
  for bucket, n in pairs(tput_n) do
    -- The first count in a bucket (the field was new) drops the bucket that falls out.
    if redis.call('HINCRBY', tput, 'n:' .. bucket, n) == n then
      redis.call('HDEL', tput, 'n:' .. (bucket - 12), 'd:' .. (bucket - 12))
    end
    local d = tput_d[bucket]
    if d then redis.call('HINCRBY', tput, 'd:' .. bucket, d) end
  end
  tput_n, tput_d = {}, {}
end
