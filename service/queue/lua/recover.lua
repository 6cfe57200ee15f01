--[[ recover: a lease that expired (its worker died): rerun it here, requeue it, or end it.
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
  KEYS[11] hooked_running  clients with an endpoint for request.running
  KEYS[12] hooked_failed   ... for request.failed
  KEYS[13] hooked_canceled ... for request.canceled
  KEYS[14] deadlines       never-started requests with a queue timeout, by deadline
  KEYS[15] hist_s          the console's per-second history ring (includes/history)
  KEYS[16] hist_m          the console's per-minute history ring
  ARGV[1] id               the request's id
  ARGV[2] member           its member of running
  ARGV[3] now              ms
  ARGV[4] events_channel   every state change
  ARGV[5] watched_channel  changes someone waits for or streams
  ARGV[6] token            the lease token of the recovering claim
  ARGV[7] worker           the recovering worker's id
  ARGV[8] lease_ms         lease length
  ARGV[9] take             '1': the recovering worker has a free slot for it
  ARGV[10] max_lost        runs lost to dead workers a request survives (operations.<op>.max_lost)
A request still 'queued' (its claim's worker died before start.lua) is queued again without
using an attempt. A running one is canceled (cancel asked), failed with worker-lost (its run
was the max_lost + 1st lost) or run again: a lost run is not the request's fault, so it
counts in 'lost', not against its attempts ('attempt' still counts runs; finish.lua retries
while attempt - lost < max attempts). A hand-off no worker took is dropped from hand and
counts as neither. Run again means, with take = '1', leased here to the recovering worker
under its claim's token, as start.lua does (so no read sees it queued between the two);
otherwise requeued at the head. Returns the job's fields when leased here ({input, attempt,
created}: a table, which its reply's other answers, strings, are told apart from); otherwise
what it did: 'rerun' (requeued after a lost run), 'not_started' (requeued, it never ran),
'worker_lost' (failed), 'canceled', 'expired' (its Queue-Timeout passed before its first
start) or 'gone' (already final); 0 if the lease is no longer expired (renewed) or gone.
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
local hooked_running = KEYS[11]
local hooked_failed = KEYS[12]
local hooked_canceled = KEYS[13]
local deadlines = KEYS[14]
local hist_s = KEYS[15]
local hist_m = KEYS[16]
local id = ARGV[1]
local member = ARGV[2]
local now = tonumber(ARGV[3])
local events_channel = ARGV[4]
local watched_channel = ARGV[5]
local token = ARGV[6]
local worker = ARGV[7]
local lease_ms = tonumber(ARGV[8])
local take = ARGV[9]
local max_lost = tonumber(ARGV[10])
local hooked  -- the statuses' hooked sets (set for each call)
--- @include "includes/hgetall"
--- @include "includes/expire"
--- @include "includes/first_start"
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

-- Lease the queued request to the recovering worker, as start.lua does; its job's fields,
-- or 'expired' when its Queue-Timeout passed before this, its first start (it never runs).
local function lease_here(rk, rec)
  if queue_expired(rk, rec, member, now) then return 'expired' end
  first_start(rec, member)
  rec['status'] = 'running'
  rec['updated'] = tostring(now)
  rec['started'] = rec['started'] or tostring(now)
  rec['worker'] = worker
  rec['lease'] = token
  redis.call('HSET', record, 'status', 'running', 'updated', now, 'started', rec['started'],
    'worker', worker, 'lease', token)
  redis.call('ZADD', running, now + lease_ms, member)
  emit(rk, rec, 'status')
  add_outbox(rec, 'running', now)
  return {rec['input'] or 'null', rec['attempt'], rec['created']}
end

local function recover()
  local deadline = redis.call('ZSCORE', running, member)
  if not deadline or tonumber(deadline) > now then return 0 end
  redis.call('ZREM', running, member)
  local rk = {record = record, ev = ev, glob = glob, cev = cev}
  local rec = hgetall(record)
  if rec['status'] == 'queued' then
    if take == '1' then return lease_here(rk, rec) end
    if queue_expired(rk, rec, member, now) then return 'expired' end
    redis.call('ZADD', pending, rec['score'], member)
    wake_workers()
    return 'not_started'
  end
  if rec['status'] ~= 'running' then return 'gone' end
  local never_ran = untaken()
  local lost = tonumber(rec['lost'] or '0')
  if not never_ran then lost = lost + 1 end
  if rec['cancel'] == '1' then
    terminate(rk, rec, 'canceled', now, 'error', cjson.encode({
      type = 'urn:acceptd:problem:canceled', title = 'Canceled', status = 409,
      detail = 'the request was canceled'}))
    account_add(rec, now)
    history(pending, 'c', now)
    return 'canceled'
  elseif lost > max_lost then
    rec['lost'] = tostring(lost)
    redis.call('HSET', record, 'lost', lost)
    terminate(rk, rec, 'failed', now, 'error', cjson.encode({
      type = 'urn:acceptd:problem:worker-lost', title = 'Worker lost', status = 500,
      detail = 'the worker running this request stopped responding (' .. lost ..
        ' runs lost; at most ' .. max_lost .. ' are rerun)'}))
    account_add(rec, now)
    history(pending, 'f', now)
    return 'worker_lost'
  end
  rec['status'] = 'queued'
  rec['updated'] = tostring(now)
  if never_ran then
    -- Handed over and never taken: nothing ran, so neither a run nor a loss is counted.
    redis.call('HSET', record, 'status', 'queued', 'updated', now)
    redis.call('HDEL', record, 'started')
    rec['started'] = nil
    -- Its Queue-Timeout applies again: it has not started yet.
    if rec['qdl'] then redis.call('ZADD', deadlines, rec['qdl'], member) end
  else
    rec['attempt'] = tostring(tonumber(rec['attempt']) + 1)
    rec['lost'] = tostring(lost)
    redis.call('HSET', record, 'attempt', rec['attempt'], 'lost', lost, 'status', 'queued',
      'updated', now)
  end
  redis.call('HDEL', record, 'lease', 'worker', 'progress')
  rec['lease'] = nil; rec['worker'] = nil; rec['progress'] = nil
  -- The queued event, then (leased here) the running one: the same events as a requeue and a
  -- claim, in one step.
  emit(rk, rec, 'status')
  if take == '1' then return lease_here(rk, rec) end
  requeue_head(rec, member)
  redis.call('HSET', record, 'score', rec['score'])
  wake_workers()
  if never_ran then return 'not_started' end
  return 'rerun'
end

--- @call
hooked = {running = hooked_running, failed = hooked_failed, canceled = hooked_canceled}
-- Counted in the console's history (a queue timeout, a cancel or worker-lost) and the
-- throughput (a cancel or worker-lost) once, at the end.
local reply = recover()
account_flush()
history_flush(pending)
return reply
