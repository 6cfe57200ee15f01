--[[ stats: an operation's queue at a glance.
  KEYS[1] pending          queued members
  KEYS[2] delayed          members waiting out a retry backoff
  KEYS[3] running          leased members
  KEYS[4] workers          worker ids by heartbeat deadline
  KEYS[5] tput             throughput buckets
  ARGV[1] now              ms
Returns {queued, running, live workers, finished in the last minute, run ms in it}.
]]
local pending = KEYS[1]
local delayed = KEYS[2]
local running = KEYS[3]
local workers = KEYS[4]
local tput = KEYS[5]
local now = tonumber(ARGV[1])
--- @include "includes/throughput"

--- @call no-writes
local n, d = throughput(now)
return {redis.call('ZCARD', pending) + redis.call('ZCARD', delayed),
  redis.call('ZCARD', running), redis.call('ZCOUNT', workers, now, '+inf'), n, d}
