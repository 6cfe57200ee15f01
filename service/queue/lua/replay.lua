--[[ replay: answer a submit whose Idempotency-Key already names another request.
  KEYS[1] idempotency      idem:<client>:<key hash>
  KEYS[2] record           r:<id> of the request the key names
  KEYS[3] pending          queued members by priority and arrival
  ARGV[1] id               the id the key names (submit's 'exists' reply)
  ARGV[2] member           that request's member of pending
  ARGV[3] body_hash        the new submit's body hash
  ARGV[4] wait             '1' when a caller waits for the outcome (its events are watched)
Returns {'replay', id, snapshot_json, position_or_-1}, {'conflict', id}, or {'gone'} when the
record has expired (the key is dropped if it still names it: the caller submits again).
]]
local idempotency = KEYS[1]
local record = KEYS[2]
local pending = KEYS[3]
local id = ARGV[1]
local member = ARGV[2]
local body_hash = ARGV[3]
local wait = ARGV[4]
--- @include "includes/hgetall"
--- @include "includes/snapshot"

--- @call
local bhash = redis.call('HGET', record, 'bhash')
if not bhash then
  if redis.call('GET', idempotency) == id then redis.call('DEL', idempotency) end
  return {'gone'}
end
if bhash ~= body_hash then return {'conflict', id} end
if wait == '1' then redis.call('HSET', record, 'wait', '1') end
local rank = redis.call('ZRANK', pending, member)
return {'replay', id, cjson.encode(snapshot(hgetall(record))), rank or -1}
