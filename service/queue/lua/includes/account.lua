-- Expects locals: tput (the throughput buckets).
-- Recent throughput: finishes and run time in 5-second buckets, the last 12 kept.
local function account(rec, at_ms)
  local bucket = math.floor(at_ms / 5000)
  if redis.call('HINCRBY', tput, 'n:' .. bucket, 1) == 1 then
    redis.call('HDEL', tput, 'n:' .. (bucket - 12), 'd:' .. (bucket - 12))
  end
  local started = tonumber(rec['started'] or '')
  if started then redis.call('HINCRBY', tput, 'd:' .. bucket, math.max(0, at_ms - started)) end
end
