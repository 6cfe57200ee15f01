--[[ release: hand a running request back to the head of the queue (graceful shutdown).
  KEYS[1] record           r:<id>
  KEYS[2] ev               ev:<id>, its kept events
  KEYS[3] glob             glob:<client>
  KEYS[4] cev              cev:<client>
  KEYS[5] running          leased members by deadline
  KEYS[6] pending          queued members by priority and arrival
  KEYS[7] wake             the list idle workers block on
  ARGV[1] id               the request's id
  ARGV[2] token            the lease token the caller holds
  ARGV[3] now              ms
  ARGV[4] events_channel   every state change
  ARGV[5] watched_channel  changes someone waits for or streams
Returns 'released' or 'lost' (the lease is not this token's).
]]
local record = KEYS[1]
local ev = KEYS[2]
local glob = KEYS[3]
local cev = KEYS[4]
local running = KEYS[5]
local pending = KEYS[6]
local wake = KEYS[7]
local id = ARGV[1]
local token = ARGV[2]
local now = tonumber(ARGV[3])
local events_channel = ARGV[4]
local watched_channel = ARGV[5]
--- @include "includes/hgetall"
--- @include "includes/emit"
--- @include "includes/requeue_head"
--- @include "includes/wake"
--- @include "includes/member"

--- @call
local rec = hgetall(record)
if rec['lease'] ~= token then return 'lost' end
local member = member_of(id, rec['client'])
redis.call('ZREM', running, member)
rec['status'] = 'queued'; rec['updated'] = tostring(now)
rec['lease'] = nil; rec['worker'] = nil; rec['progress'] = nil
requeue_head(rec, member)
redis.call('HSET', record, 'status', 'queued', 'updated', now, 'score', rec['score'])
redis.call('HDEL', record, 'lease', 'worker', 'progress')
emit({record = record, ev = ev, glob = glob, cev = cev}, rec, 'status')
wake_workers()
return 'released'
