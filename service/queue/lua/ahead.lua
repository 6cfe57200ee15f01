--[[ ahead: what one shard of a sharded operation holds ahead of a request of another shard.
  KEYS[1] pending          queued members by priority and arrival
  KEYS[2] tput             throughput buckets
  ARGV[1] max_score        the request's score, '(' before it when equal scores come after it
  ARGV[2] now              ms
Returns {members scored at most max_score, finished in the last minute, run ms in it}.
]]
local pending = KEYS[1]
local tput = KEYS[2]
local max_score = ARGV[1]
local now = tonumber(ARGV[2])
--- @include "includes/throughput"

--- @call no-writes
local n, d = throughput(now)
return {redis.call('ZCOUNT', pending, '-inf', max_score), n, d}
