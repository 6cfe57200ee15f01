-- Expects locals: deadlines (queue deadlines by time).
-- A request's first start: its Queue-Timeout no longer applies.
local function first_start(rec, dl_member)
  if rec['qdl'] and not rec['started'] then redis.call('ZREM', deadlines, dl_member) end
end
