--[[ lease: lease one due delivery a claim picked to the caller, if it is still due and its
  target still has a free slot (another dispatcher may have leased it or filled the slots
  since); a saturated target's delivery is pushed back `busy_ms`.

  KEYS[1] delivery          d:<id>, the delivery's hash
  KEYS[2] endpoint          ep:<target> of an endpoint's delivery (ep: for a callback's)
  KEYS[3] due               pending deliveries (id and target) by next attempt time
  KEYS[4] inflight          leased delivery ids by lease deadline
  KEYS[5] busy              sends in flight per target
  ARGV[1] id                the delivery's id
  ARGV[2] member            its member in `due`, as the claim returned it
  ARGV[3] now               milliseconds
  ARGV[4] deadline          the lease deadline (ms)
  ARGV[5] token             the caller's lease token
  ARGV[6] per_target        sends in flight allowed per target
  ARGV[7] busy_ms           how far to push back a delivery of a saturated target

  Returns {target, endpoint, url, client, type, payload, tries, attempts, endpoint version},
  or {} if the delivery was not leased.
]]
local delivery = KEYS[1]
local endpoint = KEYS[2]
local due = KEYS[3]
local inflight = KEYS[4]
local busy = KEYS[5]
local id = ARGV[1]
local member = ARGV[2]
local now = tonumber(ARGV[3])
local deadline = ARGV[4]
local token = ARGV[5]
local per_target = tonumber(ARGV[6])
local busy_ms = tonumber(ARGV[7])

--- @call
local score = tonumber(redis.call('ZSCORE', due, member) or '')
if not score or score > now then return {} end
local d = redis.call('HMGET', delivery, 'target', 'ep', 'url', 'client', 'type', 'payload', 'tries',
  'attempts')
if not d[1] then
  redis.call('ZREM', due, member)
  return {}
end
if tonumber(redis.call('HGET', busy, d[1]) or '0') >= per_target then
  redis.call('ZADD', due, now + busy_ms, member)
  return {}
end
redis.call('HINCRBY', busy, d[1], 1)
redis.call('ZREM', due, member)
redis.call('ZADD', inflight, deadline, id)
redis.call('HSET', delivery, 'lease', token)
-- The endpoint's version: dispatchers cache its url and secrets until it changes; 'gone' once
-- it is deleted. An endpoint's deliveries target the endpoint, so the caller declared its key.
local ver = '0'
if d[2] and d[2] ~= '' then
  local e = redis.call('HMGET', endpoint, 'ver', 'id')
  ver = e[2] and (e[1] or '0') or 'gone'
end
table.insert(d, ver)
return d
