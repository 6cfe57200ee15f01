-- Expects locals: outbox (the webhook event stream) and hooked (status -> the key of the set
-- of clients with an endpoint for it; every status the script can record).
--- @include "includes/snapshot"
-- Record a webhook event durably, in the same step as the state change.
local function add_outbox(rec, status, at_ms)
  local cb = rec['cb_url']
  local wanted = false
  if cb and cb ~= '' then
    local events = ',' .. (rec['cb_events'] or 'succeeded,failed,canceled') .. ','
    wanted = string.find(events, ',' .. status .. ',', 1, true) ~= nil
  end
  if not wanted and redis.call('SISMEMBER', hooked[status], rec['client']) == 1 then
    wanted = true
  end
  if wanted then
    local s = snapshot(rec)
    s['result'] = rec['result']
    s['cb_url'] = cb
    redis.call('XADD', outbox, '*', 'type', 'request.' .. status, 'ts', at_ms,
      'rec', cjson.encode(s))
  end
end
