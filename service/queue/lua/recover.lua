--[[ recover: a lease that expired (its worker died): requeue at the head, or end the request.
  KEYS[1] record           r:<id>
  KEYS[2] ev               ev:<id>, its kept events
  KEYS[3] glob             glob:<client>
  KEYS[4] cev              cev:<client>
  KEYS[5] running          leased members by deadline
  KEYS[6] pending          queued members by priority and arrival
  KEYS[7] hand             requests handed to idle workers
  KEYS[8] wake             the list idle workers block on
  KEYS[9] tput             throughput buckets
  KEYS[10] outbox          webhook event stream
  KEYS[11] hooked_failed   clients with an endpoint for request.failed
  KEYS[12] hooked_canceled ... for request.canceled
  ARGV[1] id               the request's id
  ARGV[2] member           its member of running
  ARGV[3] now              ms
  ARGV[4] events_channel   every state change
  ARGV[5] watched_channel  changes someone waits for or streams
A request still 'queued' (its claim's worker died before start.lua) goes back to pending
without using an attempt. A running one is canceled (cancel asked), failed (worker lost, after
max attempts) or requeued at the head with the next attempt; a hand-off no worker took is
dropped from hand and uses no attempt. Returns 1 if it recovered the lease, 0 if the lease is
no longer expired (renewed) or gone.
]]
local record = KEYS[1]
local ev = KEYS[2]
local glob = KEYS[3]
local cev = KEYS[4]
local running = KEYS[5]
local pending = KEYS[6]
local hand = KEYS[7]
local wake = KEYS[8]
local tput = KEYS[9]
local outbox = KEYS[10]
local hooked_failed = KEYS[11]
local hooked_canceled = KEYS[12]
local id = ARGV[1]
local member = ARGV[2]
local now = tonumber(ARGV[3])
local events_channel = ARGV[4]
local watched_channel = ARGV[5]
local hooked = {failed = hooked_failed, canceled = hooked_canceled}
--- @include "includes/hgetall"
--- @include "includes/terminate"
--- @include "includes/account"
--- @include "includes/requeue_head"
--- @include "includes/wake"

-- Handed to a worker that never took it (it died idle): drops the hand-off, true if it was.
local function untaken()
  for _, e in ipairs(redis.call('LRANGE', hand, 0, -1)) do
    if string.sub(e, 1, #id + 1) == id .. '\n' then
      redis.call('LREM', hand, 1, e)
      return true
    end
  end
  return false
end

local deadline = redis.call('ZSCORE', running, member)
if not deadline or tonumber(deadline) > now then return 0 end
redis.call('ZREM', running, member)
local rk = {record = record, ev = ev, glob = glob, cev = cev}
local rec = hgetall(record)
if rec['status'] == 'queued' then
  redis.call('ZADD', pending, rec['score'], member)
  wake_workers()
  return 1
end
if rec['status'] ~= 'running' then return 1 end
local attempt = tonumber(rec['attempt'])
local never_ran = untaken()
if never_ran then attempt = attempt - 1 end
if rec['cancel'] == '1' then
  terminate(rk, rec, 'canceled', now, 'error', cjson.encode({
    type = 'urn:acceptd:problem:canceled', title = 'Canceled', status = 409,
    detail = 'the request was canceled'}))
  account(rec, now)
elseif attempt >= tonumber(rec['max_att']) then
  terminate(rk, rec, 'failed', now, 'error', cjson.encode({
    type = 'urn:acceptd:problem:worker-lost', title = 'Worker lost', status = 500,
    detail = 'the worker running this request stopped responding (attempt ' .. attempt ..
      ' of ' .. rec['max_att'] .. ')'}))
  account(rec, now)
else
  rec['attempt'] = tostring(attempt + 1)
  rec['status'] = 'queued'
  rec['updated'] = tostring(now)
  requeue_head(rec, member)
  redis.call('HSET', record, 'attempt', rec['attempt'], 'status', 'queued', 'updated', now,
    'score', rec['score'])
  redis.call('HDEL', record, 'lease', 'worker', 'progress')
  rec['lease'] = nil; rec['worker'] = nil; rec['progress'] = nil
  if never_ran then
    redis.call('HDEL', record, 'started')
    rec['started'] = nil
  end
  emit(rk, rec, 'status')
  wake_workers()
end
return 1
