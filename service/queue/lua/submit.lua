--[[ submit: create requests and queue them, or hand each straight to an idle worker.
  KEYS[1] pending          queued members by priority and arrival
  KEYS[2] seq              arrival counter
  KEYS[3] idle             workers registered idle, by expiry
  KEYS[4] running          leased members by deadline
  KEYS[5] wake             the list idle workers block on
  KEYS[6] hand             requests handed to idle workers, taken by whichever pops first
  KEYS[7] outbox           webhook event stream
  KEYS[8] hooked_running   clients with an endpoint for request.running
  KEYS[9] deadlines        never-started requests with a queue timeout, by deadline
  KEYS[10] hist_s          the console's per-second history ring (includes/history)
  KEYS[11] hist_m          the console's per-minute history ring
  ARGV[1] events_channel   every state change
  ARGV[2] watched_channel  changes someone waits for or streams
  ARGV[3] idem_ttl         seconds an Idempotency-Key is kept
  ARGV[4] arrival          '': order by the seq counter; 'clock': by submit time (a sharded
                           operation's shards compare their scores: (10 - priority) * 2^42 + now)
  ARGV[5] max_depth        queue length at which submits are refused
  ARGV[6] attempts         max attempts
  ARGV[7] timeout_ms       the handler's time limit
  ARGV[8] result_ttl       seconds a result is kept
  ARGV[9] backoff_ms       retry backoff
                           (5-9: the operation's limits, the same for every call it merges;
                           6, 7 and 9 only go in a hand-off's entry: a record holds no run
                           limits, a worker runs it with its own)
  each call:
  KEYS[+1] record          r:<id>
  KEYS[+2] client_index    c:<client>
  KEYS[+3] idempotency     idem:<client>:<key hash> (unused without a key hash)
  KEYS[+4] rate            rl:<client>, the client's token bucket
  KEYS[+5] glob            glob:<client>, set while the client streams all its requests
  KEYS[+6] cev             cev:<client>, the client's kept events
  ARGV[+1] id              the request's id
  ARGV[+2] client          the submitting client
  ARGV[+3] priority        -10 to 10
  ARGV[+4] input           JSON
  ARGV[+5] now             ms
  ARGV[+6] options         '' (most submits), or a JSON object of what only some have:
                           body_hash        with an Idempotency-Key: its body's hash
                           idem_hash        the Idempotency-Key's hash
                           callback_url     and callback_events (statuses, comma-separated)
                           rate_per_second  and burst: the client's token bucket
                           wait             true when a caller waits for the outcome (its
                                            events are watched)
                           queue_timeout_ms it fails with queue-timeout unless started by then
                           retry_of         the failed or canceled request this one retries
Returns one reply per call, in order: for a request created, its position in the queue (an
integer: the caller knows the id it sent), or -1 when it was handed to a worker (running);
otherwise {'exists', id} (the Idempotency-Key names request id: replay.lua answers),
{'full', depth} or {'limited', wait_ms}. The batcher merges a tick's calls into one; each runs
protected, so one that fails (out of memory, say) is an error entry and the others stand.
]]
local pending = KEYS[1]
local seq = KEYS[2]
local idle = KEYS[3]
local running = KEYS[4]
local wake = KEYS[5]
local hand = KEYS[6]
local outbox = KEYS[7]
local hooked_running = KEYS[8]
local deadlines = KEYS[9]
local hist_s = KEYS[10]
local hist_m = KEYS[11]
local events_channel = ARGV[1]
local watched_channel = ARGV[2]
local idem_ttl = ARGV[3]
local arrival = ARGV[4]
local max_depth = tonumber(ARGV[5])
local attempts = ARGV[6]
local timeout_ms = ARGV[7]
local result_ttl = ARGV[8]
local backoff_ms = ARGV[9]
-- Calls follow the fixed KEYS and ARGV, this many of each per call.
local FIXED_KEYS, CALL_KEYS, FIXED_ARGV, CALL_ARGV = 11, 6, 9, 6
local hooked  -- the statuses' hooked sets (set for each call)
-- The options of a submit that has none (see the per-call loop).
local NO_OPTIONS = {}
-- A request's optional record fields (name, value pairs): none, shared; extended copies it.
local NO_FIELDS = {}
local function extended(fields, name, value)
  if fields == NO_FIELDS then fields = {} end
  fields[#fields + 1] = name
  fields[#fields + 1] = value
  return fields
end
--- @include "includes/fmt"
--- @include "includes/num"
--- @include "includes/emit"
--- @include "includes/heard"
--- @include "includes/outbox"
--- @include "includes/handed"
--- @include "includes/wake"
--- @include "includes/member"
--- @include "includes/protected"
--- @include "includes/history"
--- @include "includes/sliced"


-- Token bucket per client and operation: refill by elapsed time, take one token. Returns the
-- wait (ms) until a token is available, or nil when one was taken.
local function limited(rk, o, now)
  local rate = o.rate_per_second  -- numbers: decoded from the options
  if not rate or rate <= 0 then return nil end
  local burst = math.max(o.burst or 1, 1)
  local b = redis.call('HMGET', rk.rate, 'tokens', 'ts')
  local tokens, ts = tonumber(b[1]) or burst, tonumber(b[2]) or now
  tokens = math.min(burst, tokens + math.max(0, now - ts) * rate / 1000)
  if tokens < 1 then return math.ceil((1 - tokens) * 1000 / rate) end
  redis.call('HSET', rk.rate, 'tokens', tostring(tokens - 1), 'ts', now)
  redis.call('PEXPIRE', rk.rate, math.ceil(burst * 1000 / rate) + 1000)
  return nil
end

-- The run's state, set for each call (below):
-- queued: set when a call queued its request (rather than handing it to an idle worker);
-- run_depth, run_tail, trimmed: asked once per run, then kept as the run's calls change them
-- (nothing else runs meanwhile): the queue's depth, the highest score queued (a call queuing
-- past it is last, its rank the depth: no ZRANK), and the client indexes already trimmed;
-- calls, call_index: the run's calls, and the one being run (0-based);
-- seq_next, seq_last: arrival numbers are taken from seq once per run, for every call left
-- (one INCRBY, not one INCR per request): a call that creates nothing leaves a gap, which
-- orders nothing wrongly;
-- indexed: each client index's new entries (score, member pairs), added once at the run's end.
local queued, run_depth, run_tail, trimmed, calls, call_index, seq_next, seq_last, indexed
local function next_seq()
  if seq_next > seq_last then
    local left = calls - call_index
    seq_last = redis.call('INCRBY', seq, left)
    seq_next = seq_last - left + 1
  end
  seq_next = seq_next + 1
  return seq_next - 1
end
local function index_later(key, score, rid)
  local pairs_of = indexed[key]
  if not pairs_of then
    pairs_of = {}
    indexed[key] = pairs_of
  end
  pairs_of[#pairs_of + 1] = score
  pairs_of[#pairs_of + 1] = rid
end
local function index_flush()
  for key, flat in pairs(indexed) do sliced('ZADD', key, flat) end  -- a ZADD per 500
end

-- The rank a member of ``score`` will have once added to a queue of ``depth``, when it goes
-- last (nil otherwise: ZRANK tells, once it is in).
local function rank_at_tail(score, depth)
  if depth == 0 then
    run_tail = score
    return 0
  end
  if run_tail == nil then
    run_tail = tonumber(redis.call('ZRANGE', pending, -1, -1, 'WITHSCORES')[2])
  end
  if score > run_tail then
    run_tail = score
    return depth
  end
  return nil
end

local function submit(rk, c)
  local now, o = num(c.now), c.o
  if o.idem_hash then
    -- The key names another request: replay.lua answers, declaring that request's record.
    local existing = redis.call('GET', rk.idempotency)
    if existing then return {'exists', existing} end
  end
  local wait_ms = o.rate_per_second and limited(rk, o, now)
  if wait_ms then return {'limited', wait_ms} end
  if run_depth == nil then run_depth = redis.call('ZCARD', pending) end
  local depth = run_depth
  if depth >= max_depth then return {'full', depth} end
  local n, prio = next_seq(), num(c.priority)
  local score = (10 - prio) * 1099511627776 + n
  if arrival ~= '' then score = (10 - prio) * 4398046511104 + now end
  -- Nothing waits and a worker is idle: lease the request here (charged to that worker's
  -- registration) and push it onto hand, so an idle worker's blocking pop returns the job
  -- itself (no claim round trip). Whichever worker pops it runs it under the token. The
  -- record is written once, already running; both events are sent.
  local registration, worker, lease_ms, token = nil, nil, nil, nil
  if depth == 0 then
    registration = redis.call('ZRANGEBYSCORE', idle, now, '+inf', 'LIMIT', 0, 1)[1]
  end
  if registration then
    local sp = string.find(registration, ' ', 1, true)
    lease_ms = tonumber(string.sub(registration, 1, sp - 1))
    worker = string.sub(registration, sp + 1)
    token = worker .. ':h' .. n
  end
  local score_s, qdl = fmt(score), nil
  if o.queue_timeout_ms then qdl = fmt(now + o.queue_timeout_ms) end
  -- The record as a table only where something reads it: a hand-off (its events, its outbox
  -- entry, the handed job) or an event someone could see. Most submits to a busy queue have
  -- neither, and building it was a good part of a bulk submit's Lua. A new record's first
  -- event is its first: evseq is written with it (emit's seq).
  local rec = nil
  if registration or heard(rk) then
    rec = {id = c.id, client = c.client, status = 'queued', prio = c.priority, score = score_s,
      attempt = '1', max_att = attempts, timeout = timeout_ms, ttl = result_ttl,
      backoff = backoff_ms, created = c.now, updated = c.now, qdl = qdl}
    if o.wait then rec['wait'] = '1' end
    if o.retry_of then rec['retry_of'] = o.retry_of end
    if o.callback_url then
      rec['cb_url'] = o.callback_url; rec['cb_events'] = o.callback_events or ''
    end
  end
  -- What only some requests have goes in a list; the rest is written out (most requests have
  -- none of it: no list to build and unpack).
  local extra = NO_FIELDS
  if registration then extra = {'started', c.now, 'worker', worker, 'lease', token} end
  if o.body_hash then extra = extended(extra, 'bhash', o.body_hash) end
  if o.wait then extra = extended(extra, 'wait', '1') end
  if qdl then extra = extended(extra, 'qdl', qdl) end
  if o.retry_of then extra = extended(extra, 'retry_of', o.retry_of) end
  if o.callback_url then
    extra = extended(extended(extra, 'cb_url', o.callback_url), 'cb_events',
      o.callback_events or '')
  end
  redis.call('HSET', rk.record, 'id', c.id, 'client', c.client,
    'status', registration and 'running' or 'queued', 'prio', c.priority, 'score', score_s,
    'attempt', '1', 'ttl', result_ttl, 'created', c.now, 'updated', c.now,
    'evseq', registration and '2' or '1', 'input', c.input, unpack(extra))
  index_later(rk.client_index, c.now, c.id)
  -- The API's sweep (service/queue/sweep.py) drops ids whose records expired; this backstop
  -- drops those of requests queued or running for over a week, and bounds an unswept index
  -- (once per client and run: a run's calls are within milliseconds of each other).
  if not trimmed[rk.client_index] then
    trimmed[rk.client_index] = true
    local cutoff = now - (tonumber(result_ttl) + 604800) * 1000
    redis.call('ZREMRANGEBYSCORE', rk.client_index, '-inf', cutoff)
  end
  if o.idem_hash then redis.call('SET', rk.idempotency, c.id, 'EX', tonumber(idem_ttl)) end
  if rec then emit(rk, rec, 'status', 1) end
  if registration then
    redis.call('ZREM', idle, registration)
    rec['status'] = 'running'; rec['started'] = c.now; rec['worker'] = worker
    rec['lease'] = token
    redis.call('ZADD', running, now + lease_ms, member_of(c.id, c.client))
    emit(rk, rec, 'status', 2)
    add_outbox(rec, 'running', now)
    redis.call('RPUSH', hand, handed(rec, token, c.input))
    redis.call('PEXPIRE', hand, lease_ms * 2 + 60000)
    history(pending, 's', now)
    return -1
  end
  local member = member_of(c.id, c.client)
  local rank = rank_at_tail(score, depth)
  redis.call('ZADD', pending, score_s, member)
  run_depth = depth + 1
  -- Only requests with a queue timeout are in deadlines (swept by claim.lua and
  -- Queue.expire_due); one handed to a worker above has started already.
  if qdl then redis.call('ZADD', deadlines, qdl, member) end
  queued = true
  history(pending, 's', now)
  return rank or redis.call('ZRANK', pending, member)
end

--- @call
hooked = {running = hooked_running}
queued, run_depth, run_tail, trimmed = false, nil, nil, {}
calls, call_index = (#KEYS - FIXED_KEYS) / CALL_KEYS, 0
seq_next, seq_last, indexed = 1, 0, {}
local out = {}
-- One table of keys and one of arguments, refilled for each call: no garbage per call.
local rk, c = {}, {}
for i = 0, calls - 1 do
  call_index = i
  local kb, ab = FIXED_KEYS + i * CALL_KEYS, FIXED_ARGV + i * CALL_ARGV
  rk.record = KEYS[kb + 1]; rk.client_index = KEYS[kb + 2]; rk.idempotency = KEYS[kb + 3]
  rk.rate = KEYS[kb + 4]; rk.glob = KEYS[kb + 5]; rk.cev = KEYS[kb + 6]
  c.id = ARGV[ab + 1]; c.client = ARGV[ab + 2]; c.priority = ARGV[ab + 3]; c.input = ARGV[ab + 4]
  c.now = ARGV[ab + 5]; c.options = ARGV[ab + 6]
  -- The options as decoded (nil for what a submit does not have): read where used, not copied.
  c.o = c.options == '' and NO_OPTIONS or cjson.decode(c.options)
  out[#out + 1] = protected(submit, rk, c)
end
-- Blocked workers are woken once for every request this run queued (one marker is all the
-- wake list holds), not once per request: a bulk submit's thousand need one.
if queued then wake_workers() end
index_flush()
history_flush(pending, run_depth)  -- the depth is known once a call was created
return out
