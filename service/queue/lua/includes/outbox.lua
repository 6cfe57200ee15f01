-- Expects locals: outbox (the webhook event stream) and hooked (status -> the key of the set
-- of clients with an endpoint for it; every status the script can record).
--- @include "includes/snapshot"
-- Whether a client has an endpoint for a status, asked once per script run and client: the
-- sets change only outside queue scripts (webhooks/store.py), so the answer holds for the run,
-- and the calls merged into one run (a claim's batch, a merged finish) ask once, not once each.
local hooked_of
RESET[#RESET + 1] = function() hooked_of = {} end
local function is_hooked(status, cid)
  local key = status .. '\n' .. cid
  local yes = hooked_of[key]
  if yes == nil then
    yes = redis.call('SISMEMBER', hooked[status], cid) == 1
    hooked_of[key] = yes
  end
  return yes
end
-- Record a webhook event durably, in the same step as the state change.
local function add_outbox(rec, status, at_ms)
  local cb = rec['cb_url']
  local wanted = false
  if cb and cb ~= '' then
    local events = ',' .. (rec['cb_events'] or 'succeeded,failed,canceled') .. ','
    wanted = string.find(events, ',' .. status .. ',', 1, true) ~= nil
  end
  if not wanted and is_hooked(status, rec['client']) then
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
