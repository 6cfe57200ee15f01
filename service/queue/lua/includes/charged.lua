-- Expects locals: hand (the hand-off list) and worker (this worker's id).
-- Takes off hand the hand-offs charged to this worker (their token, "<worker>:h<n>", names it):
-- what submits leased to it and no blocking pop took (it timed out, was interrupted or is
-- stopping). Hand-offs are few (at most one per idle registration): the scan is short.
local function take_charged()
  local taken = {}
  local mark = worker .. ':h'
  for _, e in ipairs(redis.call('LRANGE', hand, 0, -1)) do
    local nl = string.find(e, '\n', 1, true)
    local token = string.sub(e, nl + 1, string.find(e, '\n', nl + 1, true) - 1)
    if string.sub(token, 1, #mark) == mark and string.find(token, '^%d+$', #mark + 1) then
      table.insert(taken, e)
      redis.call('LREM', hand, 1, e)
    end
  end
  return taken
end
