-- Expects locals: prefix (the operation's key prefix).
-- The record of a request the caller could not name before the script ran (popped from a
-- queue, or named by an Idempotency-Key): derived here until every script declares it.
local function derived_record(rid)
  return prefix .. 'r:' .. rid
end
