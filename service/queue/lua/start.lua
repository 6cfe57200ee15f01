--[[ start: mark a request that claim moved to running as running under the claim's lease.
  KEYS[1] record           r:<id>
  KEYS[2] ev               ev:<id>, its kept events
  KEYS[3] glob             glob:<client>
  KEYS[4] cev              cev:<client>
  KEYS[5] running          leased members by deadline
  KEYS[6] outbox           webhook event stream
  KEYS[7] hooked_running   clients with an endpoint for request.running
  ARGV[1] member           its member of running
  ARGV[2] token            the lease token of the claim
  ARGV[3] worker           the worker's id
  ARGV[4] now              ms
  ARGV[5] events_channel   every state change
  ARGV[6] watched_channel  changes someone waits for or streams
Returns {input, attempt, timeout, max attempts, backoff, created}, or false when the request is
no longer queued (canceled meanwhile, say): it is then dropped from running.
]]
local record = KEYS[1]
local ev = KEYS[2]
local glob = KEYS[3]
local cev = KEYS[4]
local running = KEYS[5]
local outbox = KEYS[6]
local hooked_running = KEYS[7]
local member = ARGV[1]
local token = ARGV[2]
local worker = ARGV[3]
local now = ARGV[4]
local events_channel = ARGV[5]
local watched_channel = ARGV[6]
local hooked = {running = hooked_running}
--- @include "includes/hgetall"
--- @include "includes/emit"
--- @include "includes/outbox"

local rec = hgetall(record)
if rec['status'] ~= 'queued' or not redis.call('ZSCORE', running, member) then
  if rec['status'] ~= 'running' then redis.call('ZREM', running, member) end
  return false
end
rec['status'] = 'running'
rec['updated'] = now
rec['started'] = rec['started'] or now
rec['worker'] = worker
rec['lease'] = token
redis.call('HSET', record, 'status', 'running', 'updated', now, 'started', rec['started'],
  'worker', worker, 'lease', token)
emit({record = record, ev = ev, glob = glob, cev = cev}, rec, 'status')
add_outbox(rec, 'running', tonumber(now))
return {rec['input'] or 'null', rec['attempt'], rec['timeout'], rec['max_att'], rec['backoff'],
  rec['created']}
