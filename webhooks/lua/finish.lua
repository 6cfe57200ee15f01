--[[ finish: record attempts of leased deliveries and their consequences (each one's next try,
  its endpoint's health), any number of them in one run.

  KEYS[1] inflight          leased delivery ids by lease deadline
  KEYS[2] due               pending deliveries (id and target) by next attempt time
  KEYS[3] busy              sends in flight per target
  ARGV[1] retention         seconds a settled delivery is kept
  ARGV[2] log_cap           how many attempts the log keeps
  ARGV[3] disable_after     ms of failures after which the endpoint is disabled
  ARGV[4] gone_reason       why an endpoint that answered gone is disabled
  ARGV[5] stale_reason      why an endpoint failing for disable_after is disabled
  each call (one attempt):
  KEYS[+1] delivery         d:<id>, the delivery's hash
  KEYS[+2] log              dlog:<id>, its attempt log
  KEYS[+3] endpoint         ep:<id> of the delivery's endpoint (ep: alone for a callback)
  ARGV[+1] id               the delivery's id
  ARGV[+2] token            the lease token the caller holds
  ARGV[+3] now              milliseconds
  ARGV[+4] outcome          delivered, retry, failed, gone or skipped
  ARGV[+5] attempt          the attempt (JSON) appended to the log
  ARGV[+6] next_at          when (ms) to try again, for a retry

  Returns one reply per call, in order: the delivery's status ('pending', 'delivered' or
  'failed'), or 'lost' if the caller's lease is no longer the delivery's. The batcher merges
  a tick's records in one partition into one run (one script call instead of one each); each
  runs protected, so one that fails is an error entry and the others stand.
]]
local inflight = KEYS[1]
local due = KEYS[2]
local busy = KEYS[3]
local retention = tonumber(ARGV[1])
local log_cap = tonumber(ARGV[2])
local disable_after = tonumber(ARGV[3])
local gone_reason = ARGV[4]
local stale_reason = ARGV[5]
-- Calls follow the fixed KEYS and ARGV, this many of each per call.
local FIXED_KEYS, CALL_KEYS, FIXED_ARGV, CALL_ARGV = 3, 3, 5, 6
-- The current call's endpoint hash (includes/disable expects this local).
local endpoint

--- @include "includes/unbusy"
--- @include "includes/settle"
--- @include "includes/disable"
--- @include "includes/member"

local function finish(c)
  local delivery, log, id, now, outcome = c.delivery, c.log, c.id, tonumber(c.now), c.outcome
  -- One read of what the steps below need (lease, target, endpoint, counters).
  local d = redis.call('HMGET', delivery, 'lease', 'target', 'ep', 'attempts', 'tries')
  if d[1] ~= c.token then return 'lost' end
  local target, ep = d[2], d[3]
  local attempts, tries = (tonumber(d[4]) or 0) + 1, tonumber(d[5]) or 0
  redis.call('ZREM', inflight, id)
  unbusy(target)
  redis.call('RPUSH', log, c.attempt)
  redis.call('LTRIM', log, -log_cap, -1)
  local status, next_at = 'failed', ''
  if outcome == 'delivered' then
    status = 'delivered'
  else
    tries = tries + 1
    if outcome == 'retry' then
      status, next_at = 'pending', c.next_at
      redis.call('ZADD', due, next_at, due_member(id, target))
    end
  end
  redis.call('HSET', delivery, 'status', status, 'next_at', next_at, 'attempts', attempts,
    'tries', tries)
  redis.call('HDEL', delivery, 'lease')
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
end

--- @call
local out = {}
for n = 0, (#KEYS - FIXED_KEYS) / CALL_KEYS - 1 do
  local k, a = FIXED_KEYS + CALL_KEYS * n, FIXED_ARGV + CALL_ARGV * n
  -- Each call as a table named after the header's per-call KEYS and ARGV.
  local c = {
    delivery = KEYS[k + 1],
    log = KEYS[k + 2],
    endpoint = KEYS[k + 3],
    id = ARGV[a + 1],
    token = ARGV[a + 2],
    now = ARGV[a + 3],
    outcome = ARGV[a + 4],
    attempt = ARGV[a + 5],
    next_at = ARGV[a + 6],
  }
  endpoint = c.endpoint
  -- Protected: one call that fails is an error entry, and the others merged with it stand.
  local ok, res = pcall(finish, c)
  if not ok and type(res) ~= 'table' then res = {err = 'ERR ' .. tostring(res)} end
  out[#out + 1] = res
end
return out
