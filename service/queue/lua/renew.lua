--[[ renew: extend a lease held with its token.
  KEYS[1] record           r:<id>
  KEYS[2] running          leased members by deadline
  ARGV[1] member           its member of running (see keys.member)
  ARGV[2] token            the lease token the caller holds
  ARGV[3] now              ms
  ARGV[4] lease_ms         lease length
Returns 'lost' (lease gone), 'cancel' (cancel requested) or 'ok'.
]]
local record = KEYS[1]
local running = KEYS[2]
local member = ARGV[1]
local token = ARGV[2]
local now = tonumber(ARGV[3])
local lease_ms = tonumber(ARGV[4])

--- @call
if redis.call('HGET', record, 'lease') ~= token then return 'lost' end
redis.call('ZADD', running, 'XX', now + lease_ms, member)
if redis.call('HGET', record, 'cancel') == '1' then return 'cancel' end
return 'ok'
