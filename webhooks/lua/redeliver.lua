--[[ redeliver: send a delivery again now, with a fresh retry schedule. A delivery leased to
  a dispatcher is left to it ('inflight'); otherwise it is queued as due ('queued') and no
  longer expires.

  KEYS[1] delivery    d:<id>, the delivery's hash
  KEYS[2] log         dlog:<id>, its attempt log
  KEYS[3] due         pending deliveries (id and target) by next attempt time
  KEYS[4] wake        the list idle dispatchers block on
  ARGV[1] id          the delivery's id
  ARGV[2] client      the caller's client: another client's delivery counts as missing
  ARGV[3] now         milliseconds

  Returns {'missing'}, or {'queued' or 'inflight', its hash (flat), its attempt log} as of
  this step (a dispatcher may send it before the caller could read it back).
]]
local delivery = KEYS[1]
local log = KEYS[2]
local due = KEYS[3]
local wake = KEYS[4]
local id = ARGV[1]
local client = ARGV[2]
local now = ARGV[3]

--- @include "includes/wake"
--- @include "includes/member"

--- @call
if redis.call('HGET', delivery, 'client') ~= client then return {'missing'} end
local outcome = 'inflight'
if not redis.call('HGET', delivery, 'lease') then
  outcome = 'queued'
  redis.call('PERSIST', delivery)
  redis.call('PERSIST', log)
  redis.call('HSET', delivery, 'status', 'pending', 'tries', 0, 'stalls', 0, 'next_at', now)
  redis.call('ZADD', due, now, due_member(id, redis.call('HGET', delivery, 'target')))
  wake_up()
end
return {outcome, redis.call('HGETALL', delivery), redis.call('LRANGE', log, 0, -1)}
