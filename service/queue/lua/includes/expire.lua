-- Expects locals: deadlines (queue deadlines by time), and those of terminate (events_channel,
-- watched_channel, outbox, hooked with a 'failed' entry).
--- @include "includes/terminate"
-- A request's Queue-Timeout applies to its first start only: true (and the request failed
-- with queue-timeout) when it has never started and its deadline (qdl, ms) has passed.
local function queue_expired(rk, rec, dl_member, at_ms)
  local qdl = tonumber(rec['qdl'] or '')
  if not qdl or rec['started'] or rec['status'] ~= 'queued' or at_ms < qdl then return false end
  redis.call('ZREM', deadlines, dl_member)
  local seconds = (qdl - tonumber(rec['created'])) / 1000
  terminate(rk, rec, 'failed', at_ms, 'error', cjson.encode({
    type = 'urn:acceptd:problem:queue-timeout', title = 'Queue timeout', status = 504,
    detail = string.format('the request did not start within %g s of its creation', seconds)}))
  return true
end

