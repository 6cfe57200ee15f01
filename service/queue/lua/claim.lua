--[[ claim: lease up to max_jobs queued requests to a worker; recover due retries and stalls.
  KEYS[1] prefix           the operation's key prefix, for the derived keys below
  KEYS[2] pending          queued ids by priority and arrival
  KEYS[3] delayed          ids waiting out a retry backoff, by due time
  KEYS[4] running          leased ids by deadline
  KEYS[5] workers          worker ids by heartbeat deadline
  KEYS[6] idle             workers registered idle, by expiry
  KEYS[7] wake             the list idle workers block on
  KEYS[8] tput             throughput buckets
  KEYS[9] outbox           webhook event stream
  KEYS[10] hooked_running  clients with an endpoint for request.running
  KEYS[11] hooked_failed   ... for request.failed
  KEYS[12] hooked_canceled ... for request.canceled
  KEYS[13] hand            hand:<worker>, this worker's hand list
  ARGV[1] now              ms
  ARGV[2] lease_ms         lease length
  ARGV[3] token            the lease token of the jobs claimed here
  ARGV[4] worker           the worker's id
  ARGV[5] max_jobs         free slots: at most this many jobs
  ARGV[6] worker_ttl_ms    heartbeat validity
  ARGV[7] idle_ms          0: do not register idle
  ARGV[8] events_channel   every state change
  ARGV[9] watched_channel  changes someone waits for or streams
Derived keys (not yet declared):
  r:<id>, ev:<id>, glob:<client>, cev:<client> of the requests popped, due or stalled;
  hand:<worker> of a stalled request's worker.
Returns {jobs, soonest_due_or_-1, handed}; jobs flat, 8 per job: id, input, attempt, timeout,
client, max attempts, backoff, created; handed: jobs submits leased to this worker (see
handed()). With nothing to claim and idle_ms > 0, the worker is registered idle for idle_ms:
the next submit to find the queue empty hands its request straight to it.
]]
local prefix = KEYS[1]
local pending = KEYS[2]
local delayed = KEYS[3]
local running = KEYS[4]
local workers = KEYS[5]
local idle = KEYS[6]
local wake = KEYS[7]
local tput = KEYS[8]
local outbox = KEYS[9]
local hooked_running = KEYS[10]
local hooked_failed = KEYS[11]
local hooked_canceled = KEYS[12]
local hand = KEYS[13]
local now = tonumber(ARGV[1])
local lease_ms = ARGV[2]
local token = ARGV[3]
local worker = ARGV[4]
local max_jobs = tonumber(ARGV[5])
local worker_ttl_ms = tonumber(ARGV[6])
local idle_ms = tonumber(ARGV[7])
local events_channel = ARGV[8]
local watched_channel = ARGV[9]
local hooked = {running = hooked_running, failed = hooked_failed, canceled = hooked_canceled}
--- @include "includes/hgetall"
--- @include "includes/terminate"
--- @include "includes/account"
--- @include "includes/requeue_head"
--- @include "includes/unregister"
--- @include "includes/wake"
--- @include "includes/derived_record"
--- @include "includes/derived_keys"
--- @include "includes/derived_hand"

-- Handed to a worker that never took it (it died idle): drops the hand-off, true if it was.
local function untaken(rid, rec)
  if not rec['worker'] then return false end
  local whk = derived_hand(rec['worker'])
  local found = false
  for _, e in ipairs(redis.call('LRANGE', whk, 0, -1)) do
    if string.sub(e, 1, #rid + 1) == rid .. '\n' then found = true end
  end
  if found then redis.call('DEL', whk) end
  return found
end

-- A lease that expired: the worker died. Requeue at the head, or fail after max attempts.
local function recover(rid)
  local rec = hgetall(derived_record(rid))
  if rec['status'] ~= 'running' then return end
  local rk = derived_keys(rid, rec['client'])
  local attempt = tonumber(rec['attempt'])
  local never_ran = untaken(rid, rec)
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
    requeue_head(rec, rid)
    redis.call('HSET', rk.record, 'attempt', rec['attempt'], 'status', 'queued', 'updated', now,
      'score', rec['score'])
    redis.call('HDEL', rk.record, 'lease', 'worker', 'progress')
    rec['lease'] = nil; rec['worker'] = nil; rec['progress'] = nil
    if never_ran then
      redis.call('HDEL', rk.record, 'started')
      rec['started'] = nil
    end
    emit(rk, rec, 'status')
  end
end

redis.call('ZADD', workers, now + worker_ttl_ms, worker)
redis.call('ZREMRANGEBYSCORE', workers, '-inf', now - 3600000)  -- long-dead workers
local given = unregister()
redis.call('ZREMRANGEBYSCORE', idle, '-inf', now)
-- Retries whose backoff has elapsed go back to the queue.
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 100)
for _, rid in ipairs(due) do
  redis.call('ZREM', delayed, rid)
  local score = redis.call('HGET', derived_record(rid), 'score')
  if score then redis.call('ZADD', pending, score, rid) end
end
local stalled = redis.call('ZRANGEBYSCORE', running, '-inf', now, 'LIMIT', 0, 100)
for _, rid in ipairs(stalled) do
  redis.call('ZREM', running, rid)
  recover(rid)
end
local jobs = {}
-- Hand-offs taken here count against the worker's free slots.
local popped = {}
if max_jobs > #given then
  popped = redis.call('ZPOPMIN', pending, max_jobs - #given)
end
local deadline = now + tonumber(lease_ms)
for i = 1, #popped, 2 do
  local rid = popped[i]
  local rec = hgetall(derived_record(rid))
  if rec['status'] == 'queued' then
    local rk = derived_keys(rid, rec['client'])
    rec['status'] = 'running'
    rec['updated'] = tostring(now)
    rec['started'] = rec['started'] or tostring(now)
    rec['worker'] = worker
    rec['lease'] = token
    redis.call('HSET', rk.record, 'status', 'running', 'updated', now, 'started', rec['started'],
      'worker', worker, 'lease', token)
    redis.call('ZADD', running, deadline, rid)
    emit(rk, rec, 'status')
    add_outbox(rec, 'running', now)
    table.insert(jobs, rid)
    table.insert(jobs, rec['input'] or 'null')
    table.insert(jobs, rec['attempt'])
    table.insert(jobs, rec['timeout'])
    table.insert(jobs, rec['client'])
    table.insert(jobs, rec['max_att'])
    table.insert(jobs, rec['backoff'])
    table.insert(jobs, rec['created'])
  end
end
if #popped > 0 and redis.call('ZCARD', pending) > 0 then wake_workers() end
if #jobs == 0 and #given == 0 and idle_ms > 0 then
  redis.call('ZADD', idle, now + idle_ms, lease_ms .. ' ' .. worker)
end
local nextdue = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
local lease_next = redis.call('ZRANGE', running, 0, 0, 'WITHSCORES')
local soonest = -1
if nextdue[2] then soonest = tonumber(nextdue[2]) end
if lease_next[2] and (soonest < 0 or tonumber(lease_next[2]) < soonest) then
  soonest = tonumber(lease_next[2])
end
return {jobs, fmt(soonest), given}
