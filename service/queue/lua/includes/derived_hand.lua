-- Expects locals: prefix (the operation's key prefix).
-- The hand list of another worker (found in the idle set or in a stalled request's record):
-- derived here until every script declares it.
local function derived_hand(worker_id)
  return prefix .. 'hand:' .. worker_id
end
