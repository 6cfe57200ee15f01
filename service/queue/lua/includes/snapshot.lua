-- Expects no locals.
--- @include "includes/hgetall"
-- A record read in part holds, under PARTIAL, the key it was read from (finish.lua's read);
-- once a snapshot of it read the whole record, that record.
local PARTIAL = {}
-- A record as clients see it: internal fields left out.
local HIDDEN = {input = true, result = true, lease = true, bhash = true, idem = true, sse = true,
  wait = true, [PARTIAL] = true}
local function snapshot(rec)
  local whole = rec[PARTIAL]
  if type(whole) == 'string' then
    -- Every caller writes its change before it publishes or records the change: the hash
    -- holds what rec would, in every field.
    whole = hgetall(whole)
    rec[PARTIAL] = whole
  end
  local s = {}
  for k, v in pairs(whole or rec) do if not HIDDEN[k] then s[k] = v end end
  return s
end
