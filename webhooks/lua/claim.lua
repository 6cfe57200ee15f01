--[[ claim: pick the deliveries a dispatcher should lease now, touching only the shared sets.
  Lists the leases that expired (their dispatcher died mid-send; the caller recovers each
  with stall.lua) and up to `max_items` due deliveries whose target has a free slot (the
  caller leases each with lease.lua, which checks again). A due delivery of a saturated
  target is pushed back `busy_ms` so it cannot hold the scan up for everyone else. Nothing
  is removed: two dispatchers picking the same delivery race in lease.lua, which one wins.

  KEYS[1] due               pending deliveries (id and target) by next attempt time
  KEYS[2] inflight          leased delivery ids by lease deadline
  KEYS[3] busy              sends in flight per target
  ARGV[1] now               milliseconds
  ARGV[2] max_items         how many due deliveries to pick at most
  ARGV[3] per_target        sends in flight allowed per target
  ARGV[4] busy_ms           how far to push back a due delivery of a saturated target
  ARGV[5] scan              how many due deliveries to look at at most

  Returns {expired delivery ids (100 at most), picked due members, the soonest due time or
  lease deadline this claim leaves to a later one (-1 if none)}.
]]
local due = KEYS[1]
local inflight = KEYS[2]
local busy = KEYS[3]
local now = tonumber(ARGV[1])
local max_items = tonumber(ARGV[2])
local per_target = tonumber(ARGV[3])
local busy_ms = tonumber(ARGV[4])
local scan = tonumber(ARGV[5])

--- @call
local expired = redis.call('ZRANGEBYSCORE', inflight, '-inf', now, 'LIMIT', 0, 100)
local picked = {}
-- Due deliveries left for a later claim (more than max_items or scan were ready).
local left = #expired >= 100
if max_items > 0 then
  local ready = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, scan)
  left = left or #ready >= scan
  local taken = {}
  for _, member in ipairs(ready) do
    if #picked >= max_items then
      left = true
      break
    end
    local target = string.sub(member, (string.find(member, '\n', 1, true) or #member) + 1)
    local sending = taken[target] or tonumber(redis.call('HGET', busy, target) or '0')
    if sending >= per_target then
      redis.call('ZADD', due, now + busy_ms, member)
    else
      taken[target] = sending + 1
      table.insert(picked, member)
    end
  end
elseif redis.call('ZCOUNT', due, '-inf', now) > 0 then
  left = true
end
local soonest = -1
if left then
  soonest = now
else
  for _, set in ipairs({due, inflight}) do
    local later = string.format('(%.0f', now)
    local head = redis.call('ZRANGEBYSCORE', set, later, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
    if head[2] and (soonest < 0 or tonumber(head[2]) < soonest) then
      soonest = tonumber(head[2])
    end
  end
end
return {expired, picked, string.format('%.0f', soonest)}
