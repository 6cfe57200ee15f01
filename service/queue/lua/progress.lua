--[[ progress: record and publish a running request's progress.
  KEYS[1] record           r:<id>
  KEYS[2] ev               ev:<id>, its kept events
  KEYS[3] glob             glob:<client>
  KEYS[4] cev              cev:<client>
  ARGV[1] token            the lease token the caller holds
  ARGV[2] now              ms
  ARGV[3] progress         JSON {percent, message}
  ARGV[4] events_channel   every state change
  ARGV[5] watched_channel  changes someone waits for or streams
Returns 'ok' or 'lost' (the lease is not this token's).
]]
local record = KEYS[1]
local ev = KEYS[2]
local glob = KEYS[3]
local cev = KEYS[4]
local token = ARGV[1]
local now = ARGV[2]
local progress = ARGV[3]
local events_channel = ARGV[4]
local watched_channel = ARGV[5]
--- @include "includes/hgetall"
--- @include "includes/emit"

--- @call
if redis.call('HGET', record, 'lease') ~= token then return 'lost' end
redis.call('HSET', record, 'progress', progress, 'updated', now)
emit({record = record, ev = ev, glob = glob, cev = cev}, hgetall(record), 'progress')
return 'ok'
