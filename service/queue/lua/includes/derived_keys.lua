-- Expects locals: prefix (the operation's key prefix).
-- The keys emit() needs of a request the caller could not name before the script ran (popped
-- from a queue or recovered): derived here until every script declares them.
local function derived_keys(rid, client)
  return {record = prefix .. 'r:' .. rid, ev = prefix .. 'ev:' .. rid,
    glob = prefix .. 'glob:' .. client, cev = prefix .. 'cev:' .. client}
end
