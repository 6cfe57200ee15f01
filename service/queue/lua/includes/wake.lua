-- Expects locals: wake (the list idle workers block on).
-- Tell blocked workers there is work: at most one marker is kept.
local function wake_workers()
  redis.call('LPUSH', wake, '1')
  redis.call('LTRIM', wake, 0, 0)
end
