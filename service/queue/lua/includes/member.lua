-- Expects no locals.
-- A request's member of pending, running and delayed: "<id>\n<client>" (service.queue.keys.member),
-- so a script that pops one can name the client's keys to its next script.
local function member_of(rid, cid)
  return rid .. '\n' .. cid
end
