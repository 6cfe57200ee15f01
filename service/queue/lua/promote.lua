--[[ promote: a retry whose backoff has elapsed goes back to the queue.
  KEYS[1] record           r:<id>
  KEYS[2] delayed          members waiting out a retry backoff, by due time
  KEYS[3] pending          queued members by priority and arrival
  KEYS[4] wake             the list idle workers block on
  ARGV[1] member           its member of delayed
  ARGV[2] now              ms
Returns 1 when it was queued again, else 0 (not due, or taken care of meanwhile).
]]
local record = KEYS[1]
local delayed = KEYS[2]
local pending = KEYS[3]
local wake = KEYS[4]
local member = ARGV[1]
local now = tonumber(ARGV[2])
--- @include "includes/wake"

--- @call
local due = redis.call('ZSCORE', delayed, member)
if not due or tonumber(due) > now then return 0 end
redis.call('ZREM', delayed, member)
local score = redis.call('HGET', record, 'score')
if not score then return 0 end
redis.call('ZADD', pending, score, member)
wake_workers()
return 1
