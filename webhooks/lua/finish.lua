--[[ finish: record one attempt of a leased delivery and its consequences (its next try, its
  endpoint's health) in one step.

  KEYS[1] delivery          d:<id>, the delivery's hash
  KEYS[2] log               dlog:<id>, its attempt log
  KEYS[3] endpoint          ep:<id> of the delivery's endpoint (ep: alone for a callback)
  KEYS[4] inflight          leased delivery ids by lease deadline
  KEYS[5] due               pending deliveries (id and target) by next attempt time
  KEYS[6] busy              sends in flight per target
  ARGV[1] id                the delivery's id
  ARGV[2] token             the lease token the caller holds
  ARGV[3] now               milliseconds
  ARGV[4] outcome           delivered, retry, failed, gone or skipped
  ARGV[5] attempt           the attempt (JSON) appended to the log
  ARGV[6] next_at           when (ms) to try again, for a retry
  ARGV[7] retention         seconds a settled delivery is kept
  ARGV[8] log_cap           how many attempts the log keeps
  ARGV[9] disable_after     ms of failures after which the endpoint is disabled
  ARGV[10] gone_reason      why an endpoint that answered gone is disabled
  ARGV[11] stale_reason     why an endpoint failing for disable_after is disabled

  Returns the delivery's status ('pending', 'delivered' or 'failed'), or 'lost' if the
  caller's lease is no longer the delivery's.
]]
local delivery = KEYS[1]
local log = KEYS[2]
local endpoint = KEYS[3]
local inflight = KEYS[4]
local due = KEYS[5]
local busy = KEYS[6]
local id = ARGV[1]
local token = ARGV[2]
local now = tonumber(ARGV[3])
local outcome = ARGV[4]
local attempt = ARGV[5]
local next_at = ARGV[6]
local retention = tonumber(ARGV[7])
local log_cap = tonumber(ARGV[8])
local disable_after = tonumber(ARGV[9])
local gone_reason = ARGV[10]
local stale_reason = ARGV[11]

--- @include "unbusy"
--- @include "settle"
--- @include "disable"
--- @include "member"

if redis.call('HGET', delivery, 'lease') ~= token then return 'lost' end
redis.call('ZREM', inflight, id)
local target = redis.call('HGET', delivery, 'target')
unbusy(target)
redis.call('HDEL', delivery, 'lease')
redis.call('HINCRBY', delivery, 'attempts', 1)
redis.call('RPUSH', log, attempt)
redis.call('LTRIM', log, -log_cap, -1)
local status = 'failed'
if outcome == 'delivered' then
  status = 'delivered'
  redis.call('HSET', delivery, 'status', status, 'next_at', '')
elseif outcome == 'retry' then
  status = 'pending'
  redis.call('HINCRBY', delivery, 'tries', 1)
  redis.call('HSET', delivery, 'status', status, 'next_at', next_at)
  redis.call('ZADD', due, next_at, due_member(id, target))
else
  redis.call('HINCRBY', delivery, 'tries', 1)
  redis.call('HSET', delivery, 'status', status, 'next_at', '')
end
local ep = redis.call('HGET', delivery, 'ep')
if ep and ep ~= '' and outcome ~= 'skipped' and redis.call('EXISTS', endpoint) == 1 then
  if outcome == 'delivered' then
    redis.call('HSET', endpoint, 'last_success', now)
    redis.call('HDEL', endpoint, 'failing_since')
  elseif outcome == 'gone' then
    disable(gone_reason)
  else
    local since = tonumber(redis.call('HGET', endpoint, 'failing_since') or '')
    if not since then
      redis.call('HSET', endpoint, 'failing_since', now)
    elseif now - since >= disable_after then
      disable(stale_reason)
    end
  end
end
if status ~= 'pending' then settle(delivery, log, retention) end
return status
