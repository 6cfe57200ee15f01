--[[ expire: fail queued requests whose Queue-Timeout passed before they started.
  KEYS[1] deadlines        never-started requests with a queue timeout, by deadline
  KEYS[2] pending          queued members by priority and arrival
  KEYS[3] outbox           webhook event stream
  KEYS[4] hooked_failed    clients with an endpoint for request.failed
  KEYS[5] hist_s           the console's per-second history ring (includes/history)
  KEYS[6] hist_m           the console's per-minute history ring
  ARGV[1] now              ms
  ARGV[2] events_channel   every state change
  ARGV[3] watched_channel  changes someone waits for or streams
  each call:
  KEYS[+1] record          r:<id>
  KEYS[+2] ev              ev:<id>, its kept events
  KEYS[+3] glob            glob:<client>
  KEYS[+4] cev             cev:<client>
  ARGV[+1] member          its member of deadlines
The members come from a read of deadlines (due ones, a bounded batch: claim.lua's, or
Queue.expire_due's). Each is checked again here: a member not due is left alone; one whose
request started or ended meanwhile is only dropped from deadlines. Returns one reply per
call: 1 when it failed the request, else 0. Runs merged and protected like start.lua.
]]
local deadlines = KEYS[1]
local pending = KEYS[2]
local outbox = KEYS[3]
local hooked_failed = KEYS[4]
local hist_s = KEYS[5]
local hist_m = KEYS[6]
local now = tonumber(ARGV[1])
local events_channel = ARGV[2]
local watched_channel = ARGV[3]
-- Calls follow the fixed KEYS and ARGV, this many of each per call.
local FIXED_KEYS, CALL_KEYS, FIXED_ARGV, CALL_ARGV = 6, 4, 3, 1
local hooked  -- the statuses' hooked sets (set for each call)
--- @include "includes/hgetall"
--- @include "includes/expire"
--- @include "includes/protected"

local function expire(rk, c)
  local member = c.member
  local due = redis.call('ZSCORE', deadlines, member)
  if not due or tonumber(due) > now then return 0 end
  local rec = hgetall(rk.record)
  if not queue_expired(rk, rec, member, now) then
    -- Started or ended meanwhile (or gone): its deadline no longer applies.
    redis.call('ZREM', deadlines, member)
    return 0
  end
  -- A claim may have popped it (still in running, not started): start.lua drops it then.
  redis.call('ZREM', pending, member)
  return 1
end

--- @call
hooked = {failed = hooked_failed}
local out = {}
for i = 0, (#KEYS - FIXED_KEYS) / CALL_KEYS - 1 do
  local kb, ab = FIXED_KEYS + i * CALL_KEYS, FIXED_ARGV + i * CALL_ARGV
  local rk = {record = KEYS[kb + 1], ev = KEYS[kb + 2], glob = KEYS[kb + 3], cev = KEYS[kb + 4]}
  out[#out + 1] = protected(expire, rk, {member = ARGV[ab + 1]})
end
history_flush(pending)
return out
