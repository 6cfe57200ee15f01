"""Every Lua script: each multi-key state transition is one atomic script.

Scripts receive the operation's key prefix (``acceptd:{op}:``) as KEYS[1]; every key they
touch starts with it, so all share one hash tag (one Cluster slot). Times come from the
caller (milliseconds), so tests can control the clock.
"""

from __future__ import annotations

# Shared helpers prepended to every script.
PRELUDE = r"""
local P = KEYS[1]
local function hgetall(key)
  local flat = redis.call('HGETALL', key)
  local t = {}
  for i = 1, #flat, 2 do t[flat[i]] = flat[i + 1] end
  return t
end
local HIDDEN = {input = true, result = true, lease = true, bhash = true, idem = true, sse = true,
  wait = true}
local function snapshot(rec)
  local s = {}
  for k, v in pairs(rec) do if not HIDDEN[k] then s[k] = v end end
  return s
end
-- Publish one state change; its number (evseq) increases per request. Events are also kept
-- for resuming streams, but only where a stream asked for it (no cost otherwise).
local function emit(rkey, rec, kind)
  local n = redis.call('HINCRBY', rkey, 'evseq', 1)
  rec['evseq'] = tostring(n)
  local st = rec['status']
  -- A waiting caller needs only the outcome; a stream needs every change.
  local watched = rec['sse'] == '1' or (rec['wait'] == '1' and kind == 'status' and
    (st == 'succeeded' or st == 'failed' or st == 'canceled'))
  local glob = redis.call('EXISTS', P .. 'glob:' .. rec['client']) == 1
  if not watched and not glob and
      redis.call('PUBSUB', 'NUMSUB', P .. 'events')[2] == 0 then
    return  -- nobody could see this event: skip encoding it (most of a busy queue's events)
  end
  local body
  if rec['wait'] == '1' and rec['result'] and #rec['result'] <= 65536 then
    -- A caller waits for this outcome: hand it the result too, sparing it a read.
    body = cjson.encode({kind = kind, rec = snapshot(rec), res = rec['result']})
  else
    body = cjson.encode({kind = kind, rec = snapshot(rec)})
  end
  if rec['sse'] == '1' then
    local ek = P .. 'ev:' .. rec['id']
    if redis.call('RPUSH', ek, body) > 64 then redis.call('LTRIM', ek, -64, -1) end
    local keep = 604800
    if st == 'succeeded' or st == 'failed' or st == 'canceled' then keep = tonumber(rec['ttl']) end
    redis.call('EXPIRE', ek, keep)
  end
  local gid = '-'
  if glob then
    local ck = P .. 'cev:' .. rec['client']
    gid = redis.call('XADD', ck, 'MAXLEN', '~', 1000, '*', 'e', body)
    redis.call('EXPIRE', ck, 86400)
  end
  -- "<id> <client> <stream id> <json>": subscribers route before parsing any JSON.
  local head = rec['id'] .. ' ' .. rec['client'] .. ' ' .. gid .. ' '
  redis.call('PUBLISH', P .. 'events', head .. body)
  -- API processes listen only to events someone waits for or streams: they never decode the
  -- rest, which is most of the traffic.
  if watched or glob then
    redis.call('PUBLISH', P .. 'watched', head .. body)
  end
end
-- Record a webhook event durably, in the same step as the state change.
local function outbox(rec, status, now)
  local cb = rec['cb_url']
  local wanted = false
  if cb and cb ~= '' then
    local events = ',' .. (rec['cb_events'] or 'succeeded,failed,canceled') .. ','
    wanted = string.find(events, ',' .. status .. ',', 1, true) ~= nil
  end
  if not wanted and redis.call('SISMEMBER', P .. 'hooked:' .. status, rec['client']) == 1 then
    wanted = true
  end
  if wanted then
    local s = snapshot(rec)
    s['result'] = rec['result']
    s['cb_url'] = cb
    redis.call('XADD', P .. 'outbox', '*', 'type', 'request.' .. status, 'ts', now,
      'rec', cjson.encode(s))
  end
end
local function fmt(n) return string.format('%.0f', n) end
-- Recent throughput: finishes and run time in 5-second buckets, the last 12 kept.
local function account(rec, now)
  local bucket = math.floor(now / 5000)
  local k = P .. 'tput'
  if redis.call('HINCRBY', k, 'n:' .. bucket, 1) == 1 then
    redis.call('HDEL', k, 'n:' .. (bucket - 12), 'd:' .. (bucket - 12))
  end
  local started = tonumber(rec['started'] or '')
  if started then redis.call('HINCRBY', k, 'd:' .. bucket, math.max(0, now - started)) end
end
local function terminate(rkey, rec, status, now, field, value)
  local ttl = tonumber(rec['ttl'])
  rec['status'] = status
  rec['finished'] = tostring(now)
  rec['updated'] = tostring(now)
  rec['expires'] = fmt(now + ttl * 1000)
  rec['lease'] = nil
  local args = {'status', status, 'finished', now, 'updated', now, 'expires', rec['expires']}
  if field then
    rec[field] = value
    table.insert(args, field)
    table.insert(args, value)
  end
  redis.call('HSET', rkey, unpack(args))
  redis.call('HDEL', rkey, 'lease', 'input')
  rec['input'] = nil
  redis.call('EXPIRE', rkey, ttl)
  emit(rkey, rec, 'status')
  outbox(rec, status, now)
end
-- Requeue at the head of its priority band's queue (before everything now waiting).
local function requeue_head(rkey, rec, rid)
  local head = redis.call('ZRANGE', P .. 'pending', 0, 0, 'WITHSCORES')
  local score = tonumber(rec['score'])
  if head[2] and tonumber(head[2]) <= score then score = tonumber(head[2]) - 1 end
  rec['score'] = fmt(score)
  redis.call('ZADD', P .. 'pending', rec['score'], rid)
end
-- Finishes and total run time (ms) over the last minute.
local function throughput(now)
  local oldest = math.floor(now / 5000) - 11
  local n, d = 0, 0
  local t = redis.call('HGETALL', P .. 'tput')
  for i = 1, #t, 2 do
    local b = tonumber(string.sub(t[i], 3))
    if b >= oldest then
      if string.sub(t[i], 1, 1) == 'n' then n = n + tonumber(t[i + 1])
      else d = d + tonumber(t[i + 1]) end
    end
  end
  return n, d
end
-- A job handed to a worker, newline-separated with the input last (it may hold newlines;
-- client names may not): id, token, attempt, timeout, max attempts, backoff, created, client.
local function handed(rec, token, input)
  return table.concat({rec['id'], token, rec['attempt'], rec['timeout'], rec['max_att'],
    rec['backoff'], rec['created'], rec['client'], input}, '\n')
end
-- A worker stops waiting idle: no more hand-offs to it. Returns what it was handed and its
-- blocking pop did not take (it timed out, was interrupted or is stopping).
local function unregister(worker, lease_ms)
  redis.call('ZREM', P .. 'idle', lease_ms .. ' ' .. worker)
  local hk = P .. 'hand:' .. worker
  local given = {}
  for _, e in ipairs(redis.call('LRANGE', hk, 0, -1)) do
    if e ~= '' then table.insert(given, e) end
  end
  redis.call('DEL', hk)
  return given
end
local function wake()
  redis.call('LPUSH', P .. 'wake', '1')
  redis.call('LTRIM', P .. 'wake', 0, 0)
end
"""

SUBMIT_ARGS = 18  # values per submit in one SUBMIT call

# KEYS[1] prefix. ARGV: one or more submits, SUBMIT_ARGS values each: id, client, priority,
#   input, now, max_depth, attempts, timeout_ms, ttl, backoff_ms, body_hash, cb_url, cb_events,
#   idem_ttl, rate_per_second (0: none), burst, wait ('1' when a caller waits for the outcome:
#   its events go to the watched channel), idempotency key hash ('' if none).
# Returns one reply per submit, in order. The batcher sends a tick's submits to one operation
# as one call (one script run and one reply instead of one each); each runs protected, so one
# that fails (out of memory, say) is an error entry and the others stand.
SUBMIT = (
    r"""
local function submit(A)
  local rkey, ckey, ikey = P .. 'r:' .. A[1], P .. 'c:' .. A[2], ''
  if A[18] ~= '' then ikey = P .. 'idem:' .. A[2] .. ':' .. A[18] end
  local now = tonumber(A[5])
  if ikey ~= '' then
    local existing = redis.call('GET', ikey)
    if existing then
      local old = P .. 'r:' .. existing
      local bhash = redis.call('HGET', old, 'bhash')
      if bhash then
        if bhash ~= A[11] then return {'conflict', existing} end
        if A[17] == '1' then redis.call('HSET', old, 'wait', '1') end
        local rank = redis.call('ZRANK', P .. 'pending', existing)
        return {'replay', existing, cjson.encode(snapshot(hgetall(old))), rank or -1}
      end
    end
  end
  local rate = tonumber(A[15])
  if rate > 0 then
    -- Token bucket per client and operation: refill by elapsed time, take one token.
    local burst = tonumber(A[16])
    local bkey = P .. 'rl:' .. A[2]
    local b = redis.call('HMGET', bkey, 'tokens', 'ts')
    local tokens, ts = tonumber(b[1]) or burst, tonumber(b[2]) or now
    tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
    if tokens < 1 then
      return {'limited', math.ceil((1 - tokens) * 1000 / rate)}
    end
    redis.call('HSET', bkey, 'tokens', tostring(tokens - 1), 'ts', now)
    redis.call('PEXPIRE', bkey, math.ceil(burst * 1000 / rate) + 1000)
  end
  local pending = P .. 'pending'
  local depth = redis.call('ZCARD', pending)
  if depth >= tonumber(A[6]) then return {'full', depth} end
  local seq = redis.call('INCR', P .. 'seq')
  local score = (10 - tonumber(A[3])) * 1099511627776 + seq
  local rec = {id = A[1], client = A[2], status = 'queued',
    prio = A[3], score = fmt(score), attempt = '1', max_att = A[7], timeout = A[8],
    ttl = A[9], backoff = A[10], created = A[5], updated = A[5]}
  local args = {'id', A[1], 'client', A[2], 'status', 'queued', 'prio', A[3],
    'score', rec['score'], 'attempt', '1', 'max_att', A[7], 'timeout', A[8],
    'ttl', A[9], 'backoff', A[10], 'created', A[5], 'updated', A[5],
    'input', A[4]}
  if A[11] ~= '' then table.insert(args, 'bhash'); table.insert(args, A[11]) end
  if A[17] == '1' then
    rec['wait'] = '1'
    table.insert(args, 'wait'); table.insert(args, '1')
  end
  if A[12] ~= '' then
    rec['cb_url'] = A[12]; rec['cb_events'] = A[13]
    table.insert(args, 'cb_url'); table.insert(args, A[12])
    table.insert(args, 'cb_events'); table.insert(args, A[13])
  end
  redis.call('HSET', rkey, unpack(args))
  redis.call('ZADD', ckey, A[5], A[1])
  -- The listing index forgets requests created long before any could still exist (their records
  -- expire result_ttl after finishing); without this it would grow for ever.
  redis.call('ZREMRANGEBYSCORE', ckey, '-inf', now - (tonumber(A[9]) + 604800) * 1000)
  if ikey ~= '' then redis.call('SET', ikey, A[1], 'EX', tonumber(A[14])) end
  emit(rkey, rec, 'status')
  -- Nothing waits and a worker is idle: lease the request to it here and push it onto that
  -- worker's own list, so its blocking pop returns the job itself (no claim round trip).
  local member = nil
  if depth == 0 then
    member = redis.call('ZRANGEBYSCORE', P .. 'idle', now, '+inf', 'LIMIT', 0, 1)[1]
  end
  if member then
    redis.call('ZREM', P .. 'idle', member)
    local sp = string.find(member, ' ', 1, true)
    local lease_ms, worker = tonumber(string.sub(member, 1, sp - 1)), string.sub(member, sp + 1)
    local token = worker .. ':h' .. seq
    rec['status'] = 'running'; rec['started'] = A[5]; rec['worker'] = worker
    rec['lease'] = token
    redis.call('HSET', rkey, 'status', 'running', 'started', A[5], 'worker', worker,
      'lease', token)
    redis.call('ZADD', P .. 'running', now + lease_ms, A[1])
    emit(rkey, rec, 'status')
    outbox(rec, 'running', now)
    local hk = P .. 'hand:' .. worker
    redis.call('RPUSH', hk, handed(rec, token, A[4]))
    redis.call('PEXPIRE', hk, lease_ms * 2 + 60000)
    return {'created', A[1], '', -1, 'running'}
  end
  redis.call('ZADD', pending, rec['score'], A[1])
  wake()
  return {'created', A[1], '', redis.call('ZRANK', pending, A[1])}
end
local out = {}
for i = 1, #ARGV, """
    + str(SUBMIT_ARGS)
    + r""" do
  local ok, res = pcall(submit, {unpack(ARGV, i, i + """
    + str(SUBMIT_ARGS - 1)
    + r""")})
  if ok then
    out[#out + 1] = res
  elseif type(res) == 'table' then
    out[#out + 1] = res  -- a command's error reply
  else
    out[#out + 1] = {err = 'ERR ' .. tostring(res)}
  end
end
return out
"""
)

# KEYS[1] prefix. ARGV: now, lease_ms, token, worker, max_jobs, worker_ttl_ms, idle_ms
# Returns {jobs, soonest_due_or_-1, handed}; jobs flat, 8 per job: id, input, attempt, timeout,
# client, max attempts, backoff, created; handed: jobs submits leased to this worker (see
# handed()). With nothing to claim and idle_ms > 0, the worker is registered idle for idle_ms:
# the next submit to find the queue empty hands its request straight to it.
CLAIM = r"""
local now = tonumber(ARGV[1])
local pending, running, delayed = P .. 'pending', P .. 'running', P .. 'delayed'
redis.call('ZADD', P .. 'workers', now + tonumber(ARGV[6]), ARGV[4])
redis.call('ZREMRANGEBYSCORE', P .. 'workers', '-inf', now - 3600000)  -- long-dead workers
local given = unregister(ARGV[4], ARGV[2])
redis.call('ZREMRANGEBYSCORE', P .. 'idle', '-inf', now)
-- Retries whose backoff has elapsed go back to the queue.
local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 100)
for _, rid in ipairs(due) do
  redis.call('ZREM', delayed, rid)
  local score = redis.call('HGET', P .. 'r:' .. rid, 'score')
  if score then redis.call('ZADD', pending, score, rid) end
end
-- Leases that expired: the worker died. Requeue at the head, or fail after max attempts.
local stalled = redis.call('ZRANGEBYSCORE', running, '-inf', now, 'LIMIT', 0, 100)
for _, rid in ipairs(stalled) do
  redis.call('ZREM', running, rid)
  local rkey = P .. 'r:' .. rid
  local rec = hgetall(rkey)
  if rec['status'] == 'running' then
    local attempt = tonumber(rec['attempt'])
    -- Handed to a worker that never took it (it died idle): this attempt never ran.
    local untaken = false
    if rec['worker'] then
      local whk = P .. 'hand:' .. rec['worker']
      for _, e in ipairs(redis.call('LRANGE', whk, 0, -1)) do
        if string.sub(e, 1, #rid + 1) == rid .. '\n' then untaken = true end
      end
      if untaken then redis.call('DEL', whk) end
    end
    if untaken then attempt = attempt - 1 end
    if rec['cancel'] == '1' then
      terminate(rkey, rec, 'canceled', now, 'error', cjson.encode({
        type = 'urn:acceptd:problem:canceled', title = 'Canceled', status = 409,
        detail = 'the request was canceled'}))
      account(rec, now)
    elseif attempt >= tonumber(rec['max_att']) then
      terminate(rkey, rec, 'failed', now, 'error', cjson.encode({
        type = 'urn:acceptd:problem:worker-lost', title = 'Worker lost', status = 500,
        detail = 'the worker running this request stopped responding (attempt ' .. attempt ..
          ' of ' .. rec['max_att'] .. ')'}))
      account(rec, now)
    else
      rec['attempt'] = tostring(attempt + 1)
      rec['status'] = 'queued'
      rec['updated'] = tostring(now)
      requeue_head(rkey, rec, rid)
      redis.call('HSET', rkey, 'attempt', rec['attempt'], 'status', 'queued', 'updated', now,
        'score', rec['score'])
      redis.call('HDEL', rkey, 'lease', 'worker', 'progress')
      rec['lease'] = nil; rec['worker'] = nil; rec['progress'] = nil
      if untaken then
        redis.call('HDEL', rkey, 'started')
        rec['started'] = nil
      end
      emit(rkey, rec, 'status')
    end
  end
end
local jobs = {}
-- Hand-offs taken here count against the worker's free slots.
local popped = {}
if tonumber(ARGV[5]) > #given then
  popped = redis.call('ZPOPMIN', pending, tonumber(ARGV[5]) - #given)
end
local deadline = now + tonumber(ARGV[2])
for i = 1, #popped, 2 do
  local rid = popped[i]
  local rkey = P .. 'r:' .. rid
  local rec = hgetall(rkey)
  if rec['status'] == 'queued' then
    rec['status'] = 'running'
    rec['updated'] = tostring(now)
    rec['started'] = rec['started'] or tostring(now)
    rec['worker'] = ARGV[4]
    rec['lease'] = ARGV[3]
    redis.call('HSET', rkey, 'status', 'running', 'updated', now, 'started', rec['started'],
      'worker', ARGV[4], 'lease', ARGV[3])
    redis.call('ZADD', running, deadline, rid)
    emit(rkey, rec, 'status')
    outbox(rec, 'running', now)
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
if #popped > 0 and redis.call('ZCARD', pending) > 0 then wake() end
local idle_ms = tonumber(ARGV[7])
if #jobs == 0 and #given == 0 and idle_ms > 0 then
  redis.call('ZADD', P .. 'idle', now + idle_ms, ARGV[2] .. ' ' .. ARGV[4])
end
local nextdue = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
local lease_next = redis.call('ZRANGE', running, 0, 0, 'WITHSCORES')
local soonest = -1
if nextdue[2] then soonest = tonumber(nextdue[2]) end
if lease_next[2] and (soonest < 0 or tonumber(lease_next[2]) < soonest) then
  soonest = tonumber(lease_next[2])
end
return {jobs, fmt(soonest), given}
"""

# KEYS[1] prefix. ARGV: worker, lease_ms (as registered by CLAIM), wake ('1' or '')
# A stopping worker: no more hand-offs. Returns what was handed to it and not yet taken; with
# wake, leaves an empty entry that ends its blocking pop at once.
UNIDLE = r"""
local given = unregister(ARGV[1], ARGV[2])
if ARGV[3] == '1' then
  local hk = P .. 'hand:' .. ARGV[1]
  redis.call('RPUSH', hk, '')
  redis.call('PEXPIRE', hk, 60000)
end
return given
"""

# KEYS[1] prefix, KEYS[2] record. ARGV: id, token, now, lease_ms
# Returns 'lost' (lease gone), 'cancel' (cancel requested) or 'ok'.
RENEW = r"""
if redis.call('HGET', KEYS[2], 'lease') ~= ARGV[2] then return 'lost' end
redis.call('ZADD', P .. 'running', 'XX', tonumber(ARGV[3]) + tonumber(ARGV[4]), ARGV[1])
if redis.call('HGET', KEYS[2], 'cancel') == '1' then return 'cancel' end
return 'ok'
"""

# KEYS[1] prefix, KEYS[2] record. ARGV: id, token, now, progress_json
PROGRESS = r"""
if redis.call('HGET', KEYS[2], 'lease') ~= ARGV[2] then return 'lost' end
redis.call('HSET', KEYS[2], 'progress', ARGV[4], 'updated', ARGV[3])
local rec = hgetall(KEYS[2])
emit(KEYS[2], rec, 'progress')
return 'ok'
"""

# KEYS[1] prefix, KEYS[2] record.
# ARGV: id, token, now, outcome (succeeded|failed|canceled|retry), payload, retry_delay_ms
# A retry that has attempts left goes to the delayed set; otherwise it fails with payload.
FINISH = r"""
local rkey, rid, now = KEYS[2], ARGV[1], tonumber(ARGV[3])
local rec = hgetall(rkey)
if rec['lease'] ~= ARGV[2] then return 'lost' end
redis.call('ZREM', P .. 'running', rid)
local outcome = ARGV[4]
if outcome == 'retry' then
  local attempt = tonumber(rec['attempt'])
  if attempt < tonumber(rec['max_att']) and rec['cancel'] ~= '1' then
    rec['attempt'] = tostring(attempt + 1)
    rec['status'] = 'queued'
    rec['updated'] = tostring(now)
    rec['lease'] = nil; rec['worker'] = nil; rec['progress'] = nil
    redis.call('HSET', rkey, 'attempt', rec['attempt'], 'status', 'queued', 'updated', now,
      'last_error', ARGV[5])
    redis.call('HDEL', rkey, 'lease', 'worker', 'progress')
    redis.call('ZADD', P .. 'delayed', now + tonumber(ARGV[6]), rid)
    emit(rkey, rec, 'status')
    wake()
    return 'retrying'
  end
  outcome = 'failed'
end
if rec['cancel'] == '1' and outcome == 'failed' then outcome = 'canceled' end
if outcome == 'succeeded' then
  terminate(rkey, rec, 'succeeded', now, 'result', ARGV[5])
else
  terminate(rkey, rec, outcome, now, 'error', ARGV[5])
end
account(rec, now)
return outcome
"""

# KEYS[1] prefix, KEYS[2] record. ARGV: id, token, now
# Hands a running request back to the head of the queue (graceful shutdown).
RELEASE = r"""
local rkey, rid, now = KEYS[2], ARGV[1], tonumber(ARGV[3])
local rec = hgetall(rkey)
if rec['lease'] ~= ARGV[2] then return 'lost' end
redis.call('ZREM', P .. 'running', rid)
rec['status'] = 'queued'; rec['updated'] = tostring(now)
rec['lease'] = nil; rec['worker'] = nil; rec['progress'] = nil
requeue_head(rkey, rec, rid)
redis.call('HSET', rkey, 'status', 'queued', 'updated', now, 'score', rec['score'])
redis.call('HDEL', rkey, 'lease', 'worker', 'progress')
emit(rkey, rec, 'status')
wake()
return 'released'
"""

# KEYS[1] prefix, KEYS[2] record. ARGV: id, client, now, error_json
# Returns {outcome, snapshot_json}: canceled | requested | already | conflict | missing
CANCEL = r"""
local rkey, rid, now = KEYS[2], ARGV[1], tonumber(ARGV[3])
local rec = hgetall(rkey)
if rec['status'] == nil or rec['client'] ~= ARGV[2] then return {'missing', ''} end
local status = rec['status']
if status == 'queued' then
  redis.call('ZREM', P .. 'pending', rid)
  redis.call('ZREM', P .. 'delayed', rid)
  rec['cancel'] = '1'
  redis.call('HSET', rkey, 'cancel', '1')
  terminate(rkey, rec, 'canceled', now, 'error', ARGV[4])
  return {'canceled', cjson.encode(snapshot(rec))}
elseif status == 'running' then
  if rec['cancel'] ~= '1' then
    rec['cancel'] = '1'
    rec['updated'] = tostring(now)
    redis.call('HSET', rkey, 'cancel', '1', 'updated', now)
    emit(rkey, rec, 'status')
    redis.call('PUBLISH', P .. 'control', cjson.encode({cancel = rid}))
  end
  return {'requested', cjson.encode(snapshot(rec))}
elseif status == 'canceled' then
  return {'already', cjson.encode(snapshot(rec))}
end
return {'conflict', cjson.encode(snapshot(rec))}
"""

# KEYS[1] prefix, KEYS[2] record. ARGV: now, with_result ('1' or '0'), watch client ('' if not)
# One round trip for a status read: the record, its position and recent throughput. With a
# watch client, the caller's own request is marked streamed and its kept events returned.
READ = r"""
local rec = hgetall(KEYS[2])
if rec['status'] == nil then return false end
local rid = rec['id']
local rank = -1
if rec['status'] == 'queued' then
  rank = redis.call('ZRANK', P .. 'pending', rid) or -1
end
local result = false
if ARGV[2] == '1' then result = rec['result'] or false end
local now = tonumber(ARGV[1])
local n, d = throughput(now)
local kept = {}
if ARGV[3] and ARGV[3] ~= '' and ARGV[3] == rec['client'] then
  if rec['sse'] ~= '1' then redis.call('HSET', KEYS[2], 'sse', '1') end
  kept = redis.call('LRANGE', P .. 'ev:' .. rid, 0, -1)
end
return {cjson.encode(snapshot(rec)), rank, n, d, result, kept}
"""

# KEYS[1] prefix. ARGV: now
STATS = r"""
local now = tonumber(ARGV[1])
local n, d = throughput(now)
return {redis.call('ZCARD', P .. 'pending') + redis.call('ZCARD', P .. 'delayed'),
  redis.call('ZCARD', P .. 'running'), redis.call('ZCOUNT', P .. 'workers', now, '+inf'), n, d}
"""

ALL = {
    "submit": SUBMIT,
    "claim": CLAIM,
    "unidle": UNIDLE,
    "renew": RENEW,
    "progress": PROGRESS,
    "finish": FINISH,
    "release": RELEASE,
    "cancel": CANCEL,
    "read": READ,
    "stats": STATS,
}


def source(name: str) -> str:
    """The full source of a script: the shared prelude, then its body."""
    return PRELUDE + ALL[name]
