-- Expects no locals.
-- A record as clients see it: internal fields left out.
local HIDDEN = {input = true, result = true, lease = true, bhash = true, idem = true, sse = true,
  wait = true}
local function snapshot(rec)
  local s = {}
  for k, v in pairs(rec) do if not HIDDEN[k] then s[k] = v end end
  return s
end
