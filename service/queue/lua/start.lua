--[[ start: mark requests that claim moved to running as running under the claim's lease.
  KEYS[1] running          leased members by deadline
  KEYS[2] outbox           webhook event stream
  KEYS[3] hooked_running   clients with an endpoint for request.running
  KEYS[4] hooked_failed    ... for request.failed
  KEYS[5] deadlines        never-started requests with a queue timeout, by deadline
  KEYS[6] pending          queued members (the history's depth sample)
  KEYS[7] hist_s           the console's per-second history ring (a queue timeout counts)
  KEYS[8] hist_m           the console's per-minute history ring
  ARGV[1] token            the lease token of the claim
  ARGV[2] worker           the worker's id
  ARGV[3] now              ms
  ARGV[4] events_channel   every state change
  ARGV[5] watched_channel  changes someone waits for or streams
  each call:
  KEYS[+1] record          r:<id>
  KEYS[+2] ev              ev:<id>, its kept events
  KEYS[+3] glob            glob:<client>
  KEYS[+4] cev             cev:<client>
  ARGV[+1] member          its member of running
Returns one reply per call, in order: '<attempt>\n<created>\n<input>' (the input last, as it
may hold newlines; one string, not a table: Valkey converts each table of a reply with a
look-up of each of its special fields; the run's limits are the worker's: a record holds none),
or false when the request is no longer queued (canceled meanwhile, say): it is then dropped
from running. A request past its Queue-Timeout at its first start is failed with queue-timeout
instead (false too): it never runs. The batcher merges a claim's starts (same token) into one script run; each runs
protected, so one that fails is an error entry and the others stand.
]]
local running = KEYS[1]
local outbox = KEYS[2]
local hooked_running = KEYS[3]
local hooked_failed = KEYS[4]
local deadlines = KEYS[5]
local pending = KEYS[6]
local hist_s = KEYS[7]
local hist_m = KEYS[8]
local token = ARGV[1]
local worker = ARGV[2]
local now = ARGV[3]
local events_channel = ARGV[4]
local watched_channel = ARGV[5]
-- Calls follow the fixed KEYS and ARGV, this many of each per call.
local FIXED_KEYS, CALL_KEYS, FIXED_ARGV, CALL_ARGV = 8, 4, 5, 1
local hooked  -- the statuses' hooked sets (set for each call)
--- @include "includes/snapshot"
--- @include "includes/num"
--- @include "includes/expire"
--- @include "includes/first_start"
--- @include "includes/protected"
--- @include "includes/record_fields"

-- What a start needs of a record: 14 fields, into a table sized once by its constructor
-- (HMGET's false for an unset field becomes nil). It knows where the rest is (PARTIAL): a
-- snapshot of it (an event someone sees, a webhook) reads the whole record then, after the
-- change was written. A record with no optional field but 'wait' (see includes/record_fields:
-- nearly every start) is asked for the 8 it holds (and 'wait'), not for 6 absent ones.
local function read(key)
  local n, base = redis.call('HLEN', key), RECORD_FIELDS.new
  if n == base or n == base + 1 then
    local v
    if n == base then
      v = redis.call('HMGET', key, 'id', 'client', 'status', 'evseq', 'input', 'attempt',
        'created', 'ttl')
    else
      v = redis.call('HMGET', key, 'id', 'client', 'status', 'evseq', 'input', 'attempt',
        'created', 'ttl', 'wait')
    end
    if v[1] and v[2] and v[3] and v[4] and v[5] and v[6] and v[7] and v[8] and
        (n == base or v[9]) then
      return {[PARTIAL] = key, id = v[1], client = v[2], status = v[3], evseq = v[4],
        input = v[5], attempt = v[6], created = v[7], ttl = v[8], wait = v[9] or nil}
    end
  end
  local v = redis.call('HMGET', key, 'id', 'client', 'status', 'qdl', 'started', 'evseq', 'input',
    'attempt', 'created', 'ttl', 'sse', 'wait', 'cb_url', 'cb_events')
  return {[PARTIAL] = key, id = v[1] or nil, client = v[2] or nil, status = v[3] or nil,
    qdl = v[4] or nil, started = v[5] or nil, evseq = v[6] or nil, input = v[7] or nil,
    attempt = v[8] or nil, created = v[9] or nil, ttl = v[10] or nil, sse = v[11] or nil,
    wait = v[12] or nil, cb_url = v[13] or nil, cb_events = v[14] or nil}
end

-- Whether each call's member is still leased, asked for all of them at once (one ZMSCORE,
-- not a ZSCORE each): a call changes only its own member, so the answers hold for the run.
-- Set for each call (below).
local leased

local function start(rk, c, i)
  local member = c.member
  local rec = read(rk.record)
  if rec['status'] ~= 'queued' or not leased[i] then
    if rec['status'] ~= 'running' then redis.call('ZREM', running, member) end
    return false
  end
  if rec['qdl'] then
    if queue_expired(rk, rec, member, tonumber(now)) then
      redis.call('ZREM', running, member)
      return false
    end
    first_start(rec, member)
  end
  rec['status'] = 'running'
  rec['updated'] = now
  rec['started'] = rec['started'] or now
  rec['worker'] = worker
  rec['lease'] = token
  -- The event's number goes in with the change (one command fewer than emit's HINCRBY).
  local seq = (num(rec['evseq']) or 0) + 1
  redis.call('HSET', rk.record, 'status', 'running', 'updated', now, 'started', rec['started'],
    'worker', worker, 'lease', token, 'evseq', seq)
  emit(rk, rec, 'status', seq)
  add_outbox(rec, 'running', num(now))
  return rec['attempt'] .. '\n' .. rec['created'] .. '\n' .. (rec['input'] or 'null')
end

--- @call
hooked = {running = hooked_running, failed = hooked_failed}
leased = {}
local out = {}
local calls = (#KEYS - FIXED_KEYS) / CALL_KEYS
-- Each call's arguments first (its member of running), so all members are asked at once.
local members = {}
for i = 0, calls - 1 do
  local ab = FIXED_ARGV + i * CALL_ARGV
  local member = ARGV[ab + 1]
  members[i + 1] = member
end
-- In slices: unpack takes a few thousand values at most.
for first = 1, calls, 1000 do
  local last = math.min(first + 999, calls)
  local scores = redis.call('ZMSCORE', running, unpack(members, first, last))
  for i = first, last do leased[i] = scores[i - first + 1] end
end
-- One table of keys and one of arguments, refilled for each call: no garbage per call.
local rk, c = {}, {}
for i = 0, calls - 1 do
  local kb = FIXED_KEYS + i * CALL_KEYS
  rk.record = KEYS[kb + 1]; rk.ev = KEYS[kb + 2]; rk.glob = KEYS[kb + 3]; rk.cev = KEYS[kb + 4]
  c.member = members[i + 1]
  out[#out + 1] = protected(start, rk, c, i + 1)
end
history_flush(pending)  -- writes only when a queue timeout failed a request
return out
