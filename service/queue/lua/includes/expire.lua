-- Expects locals: deadlines (queue deadlines by time), pending (the history's depth sample),
-- those of terminate (events_channel, watched_channel, outbox, hooked with a 'failed' entry) and
-- of history (hist_s, hist_m): the script calls history_flush(pending) before it returns.
--- @include "includes/terminate"
--- @include "includes/history"
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
  history(pending, 'f', at_ms)
  return true
end

