-- Expects the locals of emit (globbed_of, globbed_for, subscribers, events_channel).
-- Whether anyone could see an event of this client's that nobody waits for or streams: the
-- client streams all its requests, or the events channel has a subscriber (each asked once
-- per run, with emit's caches). A submit builds a new record's table only then.
local function heard(rk)
  local globbed = globbed_of[rk.glob]
  if globbed == nil then globbed = globbed_for(rk) end
  if globbed then return true end
  if subscribers == nil then subscribers = redis.call('PUBSUB', 'NUMSUB', events_channel)[2] end
  return subscribers ~= 0
end
