-- due_member(delivery_id, target): a delivery's member in the due set, as
-- webhooks.keys.due_member builds it: it carries the target, so a claim checks the target's
-- slots without the hash.
local function due_member(delivery_id, target)
  return delivery_id .. '\n' .. target
end
