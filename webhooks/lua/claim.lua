--[[ claim: lease due deliveries to a dispatcher. First re-queues deliveries whose lease
  expired (their dispatcher died mid-send; one stalled too often fails), then leases up to
  `max_items` due ones whose target has a free slot; a due delivery of a saturated target is
  pushed back `busy_ms` so it cannot hold the scan up for everyone else.

  KEYS[1] prefix            acceptd:{wh}:, for the derived keys below
  KEYS[2] due               pending delivery ids by next attempt time
  KEYS[3] inflight          leased delivery ids by lease deadline
  KEYS[4] busy              sends in flight per target
  ARGV[1] now               milliseconds
  ARGV[2] lease_ms          how long a lease lasts
  ARGV[3] token             the caller's lease token
  ARGV[4] max_items         how many deliveries to lease at most
  ARGV[5] per_target        sends in flight allowed per target
  ARGV[6] busy_ms           how far to push back a due delivery of a saturated target
  ARGV[7] scan              how many due deliveries to look at at most
  ARGV[8] max_stalls        expired leases after which a delivery fails
  ARGV[9] retention         seconds a settled delivery is kept
  ARGV[10] lease_lost       the attempt (JSON) logged for an expired lease

  Derived keys (not yet declared):
    d:<id>      deliveries whose lease expired, and the due deliveries looked at
    dlog:<id>   the attempt logs of deliveries whose lease expired
    ep:<id>     the endpoints of leased deliveries (for their version)

  Returns {flat deliveries (id, target, endpoint, url, client, type, payload, tries,
  attempts, endpoint version), soonest due or lease deadline (-1 if none)}.
]]
local prefix = KEYS[1]
local due = KEYS[2]
local inflight = KEYS[3]
local busy = KEYS[4]
local now = tonumber(ARGV[1])
local lease_ms = tonumber(ARGV[2])
local token = ARGV[3]
local max_items = tonumber(ARGV[4])
local per_target = tonumber(ARGV[5])
local busy_ms = tonumber(ARGV[6])
local scan = tonumber(ARGV[7])
local max_stalls = tonumber(ARGV[8])
local retention = tonumber(ARGV[9])
local lease_lost = ARGV[10]

--- @include "unbusy"
--- @include "settle"

for _, id in ipairs(redis.call('ZRANGEBYSCORE', inflight, '-inf', now, 'LIMIT', 0, 100)) do
  redis.call('ZREM', inflight, id)
  local dkey = prefix .. 'd:' .. id
  if redis.call('EXISTS', dkey) == 1 then
    unbusy(redis.call('HGET', dkey, 'target'))
    redis.call('HDEL', dkey, 'lease')
    redis.call('RPUSH', prefix .. 'dlog:' .. id, lease_lost)
    if redis.call('HINCRBY', dkey, 'stalls', 1) > max_stalls then
      redis.call('HSET', dkey, 'status', 'failed', 'next_at', '')
      settle(dkey, prefix .. 'dlog:' .. id, retention)
    else
      redis.call('HSET', dkey, 'next_at', now)
      redis.call('ZADD', due, now, id)
    end
  end
end
local out = {}
local n = 0
local deadline = now + lease_ms
if max_items > 0 then
  local ready = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, scan)
  for _, id in ipairs(ready) do
    if n >= max_items then break end
    local dkey = prefix .. 'd:' .. id
    local d = redis.call('HMGET', dkey, 'target', 'ep', 'url', 'client', 'type', 'payload', 'tries',
      'attempts')
    if not d[1] then
      redis.call('ZREM', due, id)
    elseif tonumber(redis.call('HGET', busy, d[1]) or '0') >= per_target then
      redis.call('ZADD', due, now + busy_ms, id)
    else
      redis.call('HINCRBY', busy, d[1], 1)
      redis.call('ZREM', due, id)
      redis.call('ZADD', inflight, deadline, id)
      redis.call('HSET', dkey, 'lease', token)
      table.insert(out, id)
      for i = 1, 8 do table.insert(out, d[i]) end
      -- The endpoint's version: dispatchers cache its url and secrets until it changes;
      -- 'gone' once it is deleted.
      local ver = '0'
      if d[2] and d[2] ~= '' then
        local e = redis.call('HMGET', prefix .. 'ep:' .. d[2], 'ver', 'id')
        ver = e[2] and (e[1] or '0') or 'gone'
      end
      table.insert(out, ver)
      n = n + 1
    end
  end
end
local soonest = -1
for _, set in ipairs({due, inflight}) do
  local head = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
  if head[2] and (soonest < 0 or tonumber(head[2]) < soonest) then soonest = tonumber(head[2]) end
end
return {out, string.format('%.0f', soonest)}
