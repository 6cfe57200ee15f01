--[[ read: a request's record, its position and recent throughput, in one round trip.
  KEYS[1] record           r:<id>
  KEYS[2] ev               ev:<id>, its kept events
  KEYS[3] pending          queued members by priority and arrival
  KEYS[4] tput             throughput buckets
  KEYS[5] running          leased members by deadline
  ARGV[1] now              ms
  ARGV[2] with_result      '1': the result too, 'input': the input instead (a retry), '0'
  ARGV[3] watch_client     the caller, '' if not watching: its own request is marked streamed
                           (its events kept from now on) and those already kept are returned
Returns false when unknown, else {snapshot_json, position_or_-1, finished, run_ms, result,
kept_events}. A queued request that a claim has popped and not yet started (its member is in
running, its record still 'queued') is next: position 0.
]]
local record = KEYS[1]
local ev = KEYS[2]
local pending = KEYS[3]
local tput = KEYS[4]
local running = KEYS[5]
local now = tonumber(ARGV[1])
local with_result = ARGV[2]
local watch_client = ARGV[3]
--- @include "includes/hgetall"
--- @include "includes/snapshot"
--- @include "includes/throughput"
--- @include "includes/member"

--- @call
local rec = hgetall(record)
if rec['status'] == nil then return false end
local rank = -1
if rec['status'] == 'queued' then
  local member = member_of(rec['id'], rec['client'])
  rank = redis.call('ZRANK', pending, member)
  if not rank then
    -- Popped by a claim, its start (the claim's next step) still to come.
    rank = redis.call('ZSCORE', running, member) and 0 or -1
  end
end
local result = false
if with_result == '1' then result = rec['result'] or false
elseif with_result == 'input' then result = rec['input'] or false end
local n, d = throughput(now)
local kept = {}
if watch_client and watch_client ~= '' and watch_client == rec['client'] then
  if rec['sse'] ~= '1' then redis.call('HSET', record, 'sse', '1') end
  kept = redis.call('LRANGE', ev, 0, -1)
end
return {cjson.encode(snapshot(rec)), rank, n, d, result, kept}
