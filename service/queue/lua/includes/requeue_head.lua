-- Expects locals: pending (the queue).
--- @include "includes/fmt"
-- Requeue at the head of its priority band's queue (before everything now waiting).
local function requeue_head(rec, queued_member)
  local head = redis.call('ZRANGE', pending, 0, 0, 'WITHSCORES')
  local score = tonumber(rec['score'])
  if head[2] and tonumber(head[2]) <= score then score = tonumber(head[2]) - 1 end
  rec['score'] = fmt(score)
  redis.call('ZADD', pending, rec['score'], queued_member)
end
