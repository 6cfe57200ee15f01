-- disable(reason): disables the endpoint once, bumping its version so dispatchers drop their
-- cached copy. Expects the local `endpoint` (the endpoint's hash).
local function disable(reason)
  if redis.call('HGET', endpoint, 'disabled') ~= '1' then
    redis.call('HSET', endpoint, 'disabled', '1', 'disabled_reason', reason)
    redis.call('HINCRBY', endpoint, 'ver', 1)
  end
end
