--[[ enlist: add a new endpoint to its client's list unless the client has as many as it may
  have. Checked and written in one step, so concurrent creates never take a client past `cap`.
  The endpoint's hash is written just before, in its own partition (the client's list lives
  in the client's): a refused endpoint's hash is deleted by the caller.

  KEYS[1] endpoints     eps:<client>, the client's endpoint ids by creation time
  ARGV[1] cap           how many endpoints a client may have
  ARGV[2] id            the endpoint's id
  ARGV[3] created       its creation time (ms)

  Returns 1, or 0 (nothing written) when the client has `cap` endpoints already.
]]
local endpoints = KEYS[1]
local cap = tonumber(ARGV[1])
local id = ARGV[2]
local created = ARGV[3]

--- @call
if redis.call('ZCARD', endpoints) >= cap then return 0 end
redis.call('ZADD', endpoints, created, id)
return 1
