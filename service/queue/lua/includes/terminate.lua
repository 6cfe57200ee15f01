-- Expects the locals of emit (events_channel, watched_channel) and of outbox (outbox, hooked).
--- @include "includes/fmt"
--- @include "includes/num"
--- @include "includes/emit"
--- @include "includes/outbox"
-- Move a request to a final status (with its result or error in field), set it to expire.
local function terminate(rk, rec, status, at_ms, field, value)
  local ttl = num(rec['ttl'])
  local at = fmt(at_ms)
  rec['status'] = status
  rec['finished'] = at
  rec['updated'] = at
  rec['expires'] = fmt(at_ms + ttl * 1000)
  rec['lease'] = nil
  -- The event's number goes in with the change (one command fewer than emit's HINCRBY).
  local seq = fmt((num(rec['evseq']) or 0) + 1)
  rec[field] = value
  -- The arguments written out, not gathered in a table: no garbage per request.
  redis.call('HSET', rk.record, 'status', status, 'finished', at, 'updated', at,
    'expires', rec['expires'], 'evseq', seq, field, value)
  if status == 'succeeded' then
    redis.call('HDEL', rk.record, 'lease', 'input')
    rec['input'] = nil
  else
    -- A failed or canceled request keeps its input until it expires: it may be retried.
    redis.call('HDEL', rk.record, 'lease')
  end
  redis.call('EXPIRE', rk.record, ttl)
  emit(rk, rec, 'status', seq)
  add_outbox(rec, status, at_ms)
end
