-- unbusy(target): one send to `target` fewer in flight. Expects the local `busy` (sends in
-- flight per target, across every dispatcher process); a target at zero leaves the hash.
local function unbusy(target)
  if target and redis.call('HINCRBY', busy, target, -1) <= 0 then
    redis.call('HDEL', busy, target)
  end
end
