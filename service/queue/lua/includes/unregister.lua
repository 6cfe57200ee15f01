-- Expects locals: idle (workers registered idle), hand (this worker's hand list), worker (its
-- id) and lease_ms (as it registered idle).
-- The worker stops waiting idle: no more hand-offs to it. Returns what it was handed and its
-- blocking pop did not take (it timed out, was interrupted or is stopping).
local function unregister()
  redis.call('ZREM', idle, lease_ms .. ' ' .. worker)
  local given = {}
  for _, e in ipairs(redis.call('LRANGE', hand, 0, -1)) do
    if e ~= '' then table.insert(given, e) end
  end
  redis.call('DEL', hand)
  return given
end
