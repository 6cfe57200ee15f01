--[[ rotate: give an endpoint a new secret. The current one keeps signing alongside it until
  `old_until`, so receivers can roll over without dropping a message.

  KEYS[1] endpoint    ep:<id>, the endpoint's hash
  ARGV[1] client      the caller's client: another client's endpoint is left alone
  ARGV[2] secret      the new secret
  ARGV[3] old_until   when (ms) the current secret stops signing

  Returns 1, or 0 if the endpoint is not the client's (or does not exist).
]]
local endpoint = KEYS[1]
local client = ARGV[1]
local secret = ARGV[2]
local old_until = ARGV[3]

--- @call
if redis.call('HGET', endpoint, 'client') ~= client then return 0 end
local current = redis.call('HGET', endpoint, 'secret')
redis.call('HSET', endpoint, 'secret', secret, 'old_secret', current, 'old_until', old_until)
redis.call('HINCRBY', endpoint, 'ver', 1)
return 1
