-- Expects no locals.
-- protected(fn, ...): fn's reply, or in its place an error entry when it fails, so the other
-- calls merged into the same script run stand (a command's error reply is a table already).
local function protected(fn, ...)
  local ok, res = pcall(fn, ...)
  if ok or type(res) == 'table' then return res end
  return {err = 'ERR ' .. tostring(res)}
end
