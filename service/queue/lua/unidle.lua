--[[ unidle: a stopping worker is handed nothing more.
  KEYS[1] idle             workers registered idle, by expiry
  KEYS[2] hand             requests handed to idle workers, taken by whichever pops first
  KEYS[3] signal           signal:<worker>, this worker's own wake-up list
  ARGV[1] worker           the worker's id
  ARGV[2] lease_ms         as registered by claim
  ARGV[3] wake_now         '1': leave an empty entry that ends the worker's blocking pop at once
Returns the hand-offs it takes (see handed()): those charged to it, and every one left on hand
once no worker is registered idle any more, so none waits for a worker that is gone.
]]
local idle = KEYS[1]
local hand = KEYS[2]
local signal = KEYS[3]
local worker = ARGV[1]
local lease_ms = ARGV[2]
local wake_now = ARGV[3]
--- @include "includes/unregister"
--- @include "includes/charged"

--- @call
unregister()
local given = take_charged()
if redis.call('ZCARD', idle) == 0 then
  for _, e in ipairs(redis.call('LRANGE', hand, 0, -1)) do table.insert(given, e) end
  redis.call('DEL', hand)
end
if wake_now == '1' then
  redis.call('RPUSH', signal, '')
  redis.call('PEXPIRE', signal, 60000)
end
return given
