--[[ forget: drop from a client's listing index the ids whose records are gone (expired).
  KEYS[1] client_index     c:<client>, the client's ids by creation time
  ARGV[1] cutoff           ms: an id created after it is left alone (a record expires at least
                           result_ttl after its creation, so the sweep reads only older ids)
  each call:
  KEYS[+1] record          r:<id>
  ARGV[+1] id              the request's id, a member of client_index
The ids come from a read of the index's oldest (service/queue/sweep.py): the API's sweep, off
the submit, claim and finish paths. A record never comes back once gone (ids are not reused),
so a second run, or two processes' at once, is harmless. Returns one flag per call, in order:
0 when the id stays (its record exists, or it is newer than cutoff), else 1 (it is not in the
index any more).
]]
local client_index = KEYS[1]
local cutoff = tonumber(ARGV[1])
local FIXED_KEYS, CALL_KEYS, FIXED_ARGV, CALL_ARGV = 1, 1, 1, 1

--- @call
local out = {}
for i = 0, (#KEYS - FIXED_KEYS) / CALL_KEYS - 1 do
  local kb, ab = FIXED_KEYS + i * CALL_KEYS, FIXED_ARGV + i * CALL_ARGV
  local record = KEYS[kb + 1]
  local id = ARGV[ab + 1]
  local created = tonumber(redis.call('ZSCORE', client_index, id))
  if not created then
    out[#out + 1] = 1  -- removed already (by another sweep, or a listing that found it gone)
  elseif created > cutoff or redis.call('EXISTS', record) == 1 then
    out[#out + 1] = 0
  else
    redis.call('ZREM', client_index, id)
    out[#out + 1] = 1
  end
end
return out
