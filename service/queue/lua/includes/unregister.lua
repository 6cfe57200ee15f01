-- Expects locals: idle (workers registered idle), worker (its id) and lease_ms (as it
-- registered idle).
-- The worker stops waiting idle: no more hand-offs are charged to it.
local function unregister()
  redis.call('ZREM', idle, lease_ms .. ' ' .. worker)
end
