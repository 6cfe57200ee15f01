--[[ finish: store a claimed request's outcome.
  KEYS[1] record           r:<id>
  KEYS[2] ev               ev:<id>, its kept events
  KEYS[3] glob             glob:<client>
  KEYS[4] cev              cev:<client>
  KEYS[5] running          leased members by deadline
  KEYS[6] delayed          members waiting out a retry backoff
  KEYS[7] wake             the list idle workers block on
  KEYS[8] tput             throughput buckets
  KEYS[9] outbox           webhook event stream
  KEYS[10] hooked_succeeded clients with an endpoint for request.succeeded
  KEYS[11] hooked_failed   ... for request.failed
  KEYS[12] hooked_canceled ... for request.canceled
  ARGV[1] id               the request's id
  ARGV[2] token            the lease token the caller holds
  ARGV[3] now              ms
  ARGV[4] outcome          succeeded | failed | canceled | retry
  ARGV[5] payload          the result, or the error (problem JSON)
  ARGV[6] retry_delay_ms   backoff before a retry runs
  ARGV[7] events_channel   every state change
  ARGV[8] watched_channel  changes someone waits for or streams
A retry that has attempts left goes to the delayed set; otherwise it fails with payload.
Returns the terminal status, 'retrying', or 'lost' (the lease is not this token's).
]]
local record = KEYS[1]
local ev = KEYS[2]
local glob = KEYS[3]
local cev = KEYS[4]
local running = KEYS[5]
local delayed = KEYS[6]
local wake = KEYS[7]
local tput = KEYS[8]
local outbox = KEYS[9]
local hooked_succeeded = KEYS[10]
local hooked_failed = KEYS[11]
local hooked_canceled = KEYS[12]
local id = ARGV[1]
local token = ARGV[2]
local now = tonumber(ARGV[3])
local outcome = ARGV[4]
local payload = ARGV[5]
local retry_delay_ms = tonumber(ARGV[6])
local events_channel = ARGV[7]
local watched_channel = ARGV[8]
local hooked = {succeeded = hooked_succeeded, failed = hooked_failed, canceled = hooked_canceled}
--- @include "includes/hgetall"
--- @include "includes/terminate"
--- @include "includes/account"
--- @include "includes/wake"
--- @include "includes/member"

local rk = {record = record, ev = ev, glob = glob, cev = cev}
local rec = hgetall(record)
if rec['lease'] ~= token then return 'lost' end
local member = member_of(id, rec['client'])
redis.call('ZREM', running, member)
if outcome == 'retry' then
  local attempt = tonumber(rec['attempt'])
  if attempt < tonumber(rec['max_att']) and rec['cancel'] ~= '1' then
    rec['attempt'] = tostring(attempt + 1)
    rec['status'] = 'queued'
    rec['updated'] = tostring(now)
    rec['lease'] = nil; rec['worker'] = nil; rec['progress'] = nil
    redis.call('HSET', record, 'attempt', rec['attempt'], 'status', 'queued', 'updated', now,
      'last_error', payload)
    redis.call('HDEL', record, 'lease', 'worker', 'progress')
    redis.call('ZADD', delayed, now + retry_delay_ms, member)
    emit(rk, rec, 'status')
    wake_workers()
    return 'retrying'
  end
  outcome = 'failed'
end
if rec['cancel'] == '1' and outcome == 'failed' then outcome = 'canceled' end
if outcome == 'succeeded' then
  terminate(rk, rec, 'succeeded', now, 'result', payload)
else
  terminate(rk, rec, outcome, now, 'error', payload)
end
account(rec, now)
return outcome
