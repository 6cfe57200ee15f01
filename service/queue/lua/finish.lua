--[[ finish: store claimed requests' outcomes, any number of them in one run.
  KEYS[1] running          leased members by deadline
  KEYS[2] delayed          members waiting out a retry backoff
  KEYS[3] wake             the list idle workers block on
  KEYS[4] tput             throughput buckets
  KEYS[5] outbox           webhook event stream
  KEYS[6] hooked_succeeded clients with an endpoint for request.succeeded
  KEYS[7] hooked_failed    ... for request.failed
  KEYS[8] hooked_canceled  ... for request.canceled
  KEYS[9] pending          queued members (the history's depth sample)
  KEYS[10] hist_s          the console's per-second history ring (includes/history)
  KEYS[11] hist_m          the console's per-minute history ring
  KEYS[12] idle            workers registered idle, by expiry
  ARGV[1] events_channel   every state change
  ARGV[2] watched_channel  changes someone waits for or streams
  ARGV[3] idle_entry       '' or '<lease ms> <worker>': register that worker idle again (below)
  ARGV[4] idle_until       ms: the registration's expiry
  ARGV[5] max_attempts     the operation's attempts, as the worker has them (a record holds no
                           run limits: an older release's max_att field is not read)
  each call:
  KEYS[+1] record          r:<id>
  KEYS[+2] ev              ev:<id>, its kept events
  KEYS[+3] glob            glob:<client>
  KEYS[+4] cev             cev:<client>
  ARGV[+1] id              the request's id
  ARGV[+2] token           the lease token the caller holds
  ARGV[+3] now             ms
  ARGV[+4] outcome         succeeded | failed | canceled | retry
  ARGV[+5] payload         the result, or the error (problem JSON)
  ARGV[+6] retry_delay_ms  backoff before a retry runs
A retry that has attempts left (runs lost to dead workers use none) goes to the delayed set;
otherwise it fails with payload.
Returns one reply per call, in order: the terminal status, 'retrying', or 'lost' (the lease
is not this token's). The batcher merges a tick's finishes to one operation into one script
run (one reply instead of one each); each runs protected, so one that fails is an error entry
and the others stand.
A worker handed a request by a submit does not claim again before its blocking pop: with
idle_entry, it is registered idle here, as its claim would have done, unless requests are
queued (the submits that queued them left a wake-up marker, which ends its pop).
]]
local running = KEYS[1]
local delayed = KEYS[2]
local wake = KEYS[3]
local tput = KEYS[4]
local outbox = KEYS[5]
local hooked_succeeded = KEYS[6]
local hooked_failed = KEYS[7]
local hooked_canceled = KEYS[8]
local pending = KEYS[9]
local hist_s = KEYS[10]
local hist_m = KEYS[11]
local idle = KEYS[12]
local events_channel = ARGV[1]
local watched_channel = ARGV[2]
local idle_entry = ARGV[3]
local idle_until = ARGV[4]
local max_attempts = ARGV[5]
-- Calls follow the fixed KEYS and ARGV, this many of each per call.
local FIXED_KEYS, CALL_KEYS, FIXED_ARGV, CALL_ARGV = 12, 4, 5, 6
local hooked  -- the statuses' hooked sets (set for each call)
--- @include "includes/snapshot"
--- @include "includes/num"
--- @include "includes/terminate"
--- @include "includes/account"
--- @include "includes/wake"
--- @include "includes/member"
--- @include "includes/protected"
--- @include "includes/history"
--- @include "includes/sliced"
--- @include "includes/record_fields"

-- What a finish needs of a record: 11 of its 14 or more fields, not its input; the three a
-- retry or failure needs besides (attempt, lost, cancel) only then (HMGET looks each field up in
-- the record, and an absent one, as cancel and lost mostly are, costs a full scan). A record with
-- no optional field but 'wait' (see includes/record_fields: nearly every finish) is asked for
-- the 7 of them it holds (and 'wait'), not for 4 absent ones. The table knows where the rest
-- is (PARTIAL): a snapshot of it (an event someone sees, a webhook) reads the whole record
-- then, after the change was written; most finishes publish nothing. A constructor sizes the
-- table once; HMGET's false for an unset field becomes nil.
local function read(key)
  local n, base = redis.call('HLEN', key), RECORD_FIELDS.running
  if n == base or n == base + 1 then
    local v
    if n == base then
      v = redis.call('HMGET', key, 'id', 'client', 'lease', 'evseq', 'ttl', 'created', 'started')
    else
      v = redis.call('HMGET', key, 'id', 'client', 'lease', 'evseq', 'ttl', 'created', 'started',
        'wait')
    end
    if v[1] and v[2] and v[3] and v[4] and v[5] and v[6] and v[7] and
        (n == base or v[8]) then
      return {[PARTIAL] = key, id = v[1], client = v[2], lease = v[3], evseq = v[4],
        ttl = v[5], created = v[6], started = v[7], wait = v[8] or nil}
    end
  end
  local v = redis.call('HMGET', key, 'id', 'client', 'lease', 'evseq', 'ttl', 'created',
    'started', 'sse', 'wait', 'cb_url', 'cb_events')
  return {[PARTIAL] = key, id = v[1] or nil, client = v[2] or nil, lease = v[3] or nil,
    evseq = v[4] or nil, ttl = v[5] or nil, created = v[6] or nil, started = v[7] or nil,
    sse = v[8] or nil, wait = v[9] or nil, cb_url = v[10] or nil, cb_events = v[11] or nil}
end

-- The fields a retry or a failure reads besides (see read).
local function read_attempts(key, rec)
  local v = redis.call('HMGET', key, 'attempt', 'lost', 'cancel')
  rec['attempt'] = v[1] or nil; rec['lost'] = v[2] or nil; rec['cancel'] = v[3] or nil
end

-- The members this run takes out of running, removed at its end (one ZREM, not one each;
-- nothing in between reads running). Set for each call (below).
local unleased

local function finish(rk, c)
  local id, token, now, outcome, payload = c.id, c.token, num(c.now), c.outcome, c.payload
  local rec = read(rk.record)
  if rec['lease'] ~= token then return 'lost' end
  local member = member_of(id, rec['client'])
  unleased[#unleased + 1] = member
  if outcome == 'retry' or outcome == 'failed' then read_attempts(rk.record, rec) end
  if outcome == 'retry' then
    local attempt = tonumber(rec['attempt'])
    -- Runs lost to dead workers (recover.lua) use no attempt.
    if attempt - tonumber(rec['lost'] or '0') < tonumber(max_attempts) and
        rec['cancel'] ~= '1' then
      rec['attempt'] = tostring(attempt + 1)
      rec['status'] = 'queued'
      rec['updated'] = tostring(now)
      rec['lease'] = nil; rec['worker'] = nil; rec['progress'] = nil
      local seq = (tonumber(rec['evseq']) or 0) + 1  -- written with the change, as terminate
      redis.call('HSET', rk.record, 'attempt', rec['attempt'], 'status', 'queued', 'updated', now,
        'last_error', payload, 'evseq', seq)
      redis.call('HDEL', rk.record, 'lease', 'worker', 'progress')
      redis.call('ZADD', delayed, now + tonumber(c.retry_delay_ms), member)
      emit(rk, rec, 'status', seq)
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
  account_add(rec, now)
  local created, started = num(rec['created']), num(rec['started'] or '')
  local field = outcome == 'succeeded' and 'ok' or (outcome == 'failed' and 'f' or 'c')
  history(pending, field, now,
    started and math.max(0, started - created), started and math.max(0, now - started))
  return outcome
end

--- @call
hooked = {succeeded = hooked_succeeded, failed = hooked_failed, canceled = hooked_canceled}
unleased = {}
local out = {}
-- One table of keys and one of arguments, refilled for each call: no garbage per call.
local rk, c = {}, {}
for i = 0, (#KEYS - FIXED_KEYS) / CALL_KEYS - 1 do
  local kb, ab = FIXED_KEYS + i * CALL_KEYS, FIXED_ARGV + i * CALL_ARGV
  rk.record = KEYS[kb + 1]; rk.ev = KEYS[kb + 2]; rk.glob = KEYS[kb + 3]; rk.cev = KEYS[kb + 4]
  c.id = ARGV[ab + 1]; c.token = ARGV[ab + 2]; c.now = ARGV[ab + 3]; c.outcome = ARGV[ab + 4]
  c.payload = ARGV[ab + 5]; c.retry_delay_ms = ARGV[ab + 6]
  out[#out + 1] = protected(finish, rk, c)
end
sliced('ZREM', running, unleased)
account_flush()
local depth = nil
if idle_entry ~= '' then
  depth = redis.call('ZCARD', pending)
  if depth == 0 then redis.call('ZADD', idle, idle_until, idle_entry) end
end
history_flush(pending, depth)
return out
