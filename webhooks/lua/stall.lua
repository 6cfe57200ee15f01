--[[ stall: recover one delivery whose lease expired (its dispatcher died mid-send): it is
  queued as due again, or fails once it stalled more than `max_stalls` times. A delivery
  finished or leased anew since the claim listed it is left alone.

  KEYS[1] delivery          d:<id>, the delivery's hash
  KEYS[2] log               dlog:<id>, its attempt log
  KEYS[3] due               pending deliveries (id and target) by next attempt time
  KEYS[4] inflight          leased delivery ids by lease deadline
  KEYS[5] busy              sends in flight per target
  ARGV[1] id                the delivery's id
  ARGV[2] now               milliseconds
  ARGV[3] max_stalls        expired leases after which a delivery fails
  ARGV[4] retention         seconds a settled delivery is kept
  ARGV[5] lease_lost        the attempt (JSON) logged for an expired lease

  Returns 'due' (queued again), 'failed', or '' if there was nothing to recover.
]]
local delivery = KEYS[1]
local log = KEYS[2]
local due = KEYS[3]
local inflight = KEYS[4]
local busy = KEYS[5]
local id = ARGV[1]
local now = tonumber(ARGV[2])
local max_stalls = tonumber(ARGV[3])
local retention = tonumber(ARGV[4])
local lease_lost = ARGV[5]

--- @include "includes/unbusy"
--- @include "includes/settle"
--- @include "includes/member"

--- @call
local deadline = tonumber(redis.call('ZSCORE', inflight, id) or '')
if not deadline or deadline > now then return '' end
redis.call('ZREM', inflight, id)
if redis.call('EXISTS', delivery) == 0 then return '' end
local target = redis.call('HGET', delivery, 'target')
unbusy(target)
redis.call('HDEL', delivery, 'lease')
redis.call('RPUSH', log, lease_lost)
if redis.call('HINCRBY', delivery, 'stalls', 1) > max_stalls then
  redis.call('HSET', delivery, 'status', 'failed', 'next_at', '')
  settle(delivery, log, retention)
  return 'failed'
end
redis.call('HSET', delivery, 'next_at', now)
redis.call('ZADD', due, now, due_member(id, target))
return 'due'
