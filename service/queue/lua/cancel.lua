--[[ cancel: cancel a queued request, or ask the worker running it to stop.
  KEYS[1] record           r:<id>
  KEYS[2] ev               ev:<id>, its kept events
  KEYS[3] glob             glob:<client>
  KEYS[4] cev              cev:<client>
  KEYS[5] pending          queued members by priority and arrival
  KEYS[6] delayed          members waiting out a retry backoff
  KEYS[7] outbox           webhook event stream
  KEYS[8] hooked_canceled  clients with an endpoint for request.canceled
  KEYS[9] hist_s           the console's per-second history ring (includes/history)
  KEYS[10] hist_m          the console's per-minute history ring
  ARGV[1] id               the request's id
  ARGV[2] client           the caller: only its own requests can be canceled
  ARGV[3] now              ms
  ARGV[4] error_json       the problem JSON stored on the request
  ARGV[5] events_channel   every state change
  ARGV[6] watched_channel  changes someone waits for or streams
  ARGV[7] control_channel  tells workers to cancel running requests
Returns {outcome, snapshot_json}: canceled | requested | already | conflict | missing.
]]
local record = KEYS[1]
local ev = KEYS[2]
local glob = KEYS[3]
local cev = KEYS[4]
local pending = KEYS[5]
local delayed = KEYS[6]
local outbox = KEYS[7]
local hooked_canceled = KEYS[8]
local hist_s = KEYS[9]
local hist_m = KEYS[10]
local id = ARGV[1]
local client = ARGV[2]
local now = tonumber(ARGV[3])
local error_json = ARGV[4]
local events_channel = ARGV[5]
local watched_channel = ARGV[6]
local control_channel = ARGV[7]
local hooked  -- the statuses' hooked sets (set for each call)
--- @include "includes/hgetall"
--- @include "includes/terminate"
--- @include "includes/member"
--- @include "includes/history"

--- @call
hooked = {canceled = hooked_canceled}
local rk = {record = record, ev = ev, glob = glob, cev = cev}
local rec = hgetall(record)
if rec['status'] == nil or rec['client'] ~= client then return {'missing', ''} end
local status = rec['status']
if status == 'queued' then
  local member = member_of(id, client)
  redis.call('ZREM', pending, member)
  redis.call('ZREM', delayed, member)
  rec['cancel'] = '1'
  redis.call('HSET', record, 'cancel', '1')
  terminate(rk, rec, 'canceled', now, 'error', error_json)
  history(pending, 'c', now)
  history_flush(pending)
  return {'canceled', cjson.encode(snapshot(rec))}
elseif status == 'running' then
  if rec['cancel'] ~= '1' then
    rec['cancel'] = '1'
    rec['updated'] = tostring(now)
    redis.call('HSET', record, 'cancel', '1', 'updated', now)
    emit(rk, rec, 'status')
    redis.call('PUBLISH', control_channel, cjson.encode({cancel = id}))
  end
  return {'requested', cjson.encode(snapshot(rec))}
elseif status == 'canceled' then
  return {'already', cjson.encode(snapshot(rec))}
end
return {'conflict', cjson.encode(snapshot(rec))}
