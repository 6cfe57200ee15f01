--[[ unidle: a stopping worker is handed nothing more.
  KEYS[1] idle             workers registered idle, by expiry
  KEYS[2] hand             hand:<worker>, this worker's hand list
  ARGV[1] worker           the worker's id
  ARGV[2] lease_ms         as registered by claim
  ARGV[3] wake_now         '1': leave an empty entry that ends the worker's blocking pop at once
Returns what was handed to the worker and not yet taken (see handed()).
]]
local idle = KEYS[1]
local hand = KEYS[2]
local worker = ARGV[1]
local lease_ms = ARGV[2]
local wake_now = ARGV[3]
--- @include "includes/unregister"

local given = unregister()
if wake_now == '1' then
  redis.call('RPUSH', hand, '')
  redis.call('PEXPIRE', hand, 60000)
end
return given
