--[[ upgrade: rewrite one member an older release left bare (its id only) as <id>\n<client>.
  KEYS[1] set              pending, running or delayed
  ARGV[1] bare             the member as the older release wrote it
  ARGV[2] member           <id>\n<client>; '' when the request's record is gone: drop it
Keeps its score. Does nothing when the bare member is gone meanwhile (a claim took it), so it
never puts back what another worker took. Returns 1 if it rewrote or dropped it, else 0.
]]
local set = KEYS[1]
local bare = ARGV[1]
local member = ARGV[2]

--- @call
local score = redis.call('ZSCORE', set, bare)
if not score then return 0 end
if member ~= '' then redis.call('ZADD', set, score, member) end
redis.call('ZREM', set, bare)
return 1
