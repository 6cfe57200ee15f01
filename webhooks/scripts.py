"""Every Lua script of the webhook package: each multi-key state move is one atomic script.

Scripts receive the webhook prefix (``acceptd:{wh}:``) as KEYS[1] and touch only keys under
it (one hash tag, one Cluster slot). Times (milliseconds) come from the caller's clock.
"""

from __future__ import annotations

PRELUDE = r"""
local P = KEYS[1]
local function has(list, item)
  return string.find(',' .. list .. ',', ',' .. item .. ',', 1, true) ~= nil
end
local function wake()
  redis.call('LPUSH', P .. 'wake', '1')
  redis.call('LTRIM', P .. 'wake', 0, 0)
end
-- Per-target sends in flight, across every dispatcher process.
local function unbusy(target)
  if target and redis.call('HINCRBY', P .. 'busy', target, -1) <= 0 then
    redis.call('HDEL', P .. 'busy', target)
  end
end
local function settle(id, retention)
  redis.call('EXPIRE', P .. 'd:' .. id, retention)
  redis.call('EXPIRE', P .. 'dlog:' .. id, retention)
end
local function disable(ep, reason)
  local ekey = P .. 'ep:' .. ep
  if redis.call('HGET', ekey, 'disabled') ~= '1' then
    redis.call('HSET', ekey, 'disabled', '1', 'disabled_reason', reason)
    redis.call('HINCRBY', ekey, 'ver', 1)
  end
end
"""

# KEYS[1] prefix. ARGV: client, type, op, stream entry id, payload, callback url, callback
# target, now, index cap, request id.
# Creates one delivery per matching enabled endpoint and one for the callback url. Ids derive
# from (op, entry, target): a fan-out retried after a crash re-creates nothing.
FANOUT = r"""
local client, etype, op, entry = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local now, cap = ARGV[8], tonumber(ARGV[9])
local created = {}
local function deliver(target, idpart, ep, url)
  local id = 'msg_' .. string.sub(redis.sha1hex(op .. '/' .. entry .. '/' .. idpart), 1, 26)
  local dkey = P .. 'd:' .. id
  if redis.call('EXISTS', dkey) == 1 then return end
  redis.call('HSET', dkey, 'id', id, 'client', client, 'ep', ep, 'url', url, 'target', target,
    'type', etype, 'op', op, 'rid', ARGV[10], 'payload', ARGV[5], 'status', 'pending',
    'attempts', 0, 'tries', 0, 'stalls', 0, 'created', now, 'next_at', now)
  redis.call('ZADD', P .. 'due', now, id)
  if ep ~= '' then
    local index = P .. 'epd:' .. ep
    redis.call('ZADD', index, now, id)
    redis.call('ZREMRANGEBYRANK', index, 0, -(cap + 1))
  end
  table.insert(created, id)
end
for _, ep in ipairs(redis.call('ZRANGE', P .. 'eps:' .. client, 0, -1)) do
  local e = redis.call('HMGET', P .. 'ep:' .. ep, 'disabled', 'events', 'operations')
  if e[1] == '0' and has(e[2], etype) and (e[3] == '' or has(e[3], op)) then
    deliver(ep, ep, ep, '')
  end
end
if ARGV[6] ~= '' then deliver(ARGV[7], 'callback', '', ARGV[6]) end
if #created > 0 then wake() end
return created
"""

# KEYS[1] prefix. ARGV: now, lease_ms, token, max, per_target, busy_ms, scan, max_stalls,
# retention_s, lease_lost_json.
# First re-queues deliveries whose lease expired (their dispatcher died mid-send), then leases
# up to ``max`` due ones whose target has a free slot; a due delivery of a saturated target is
# pushed back ``busy_ms`` so it cannot hold the scan up for everyone else.
# Returns {flat deliveries, soonest due or lease deadline (-1 if none)}.
CLAIM = r"""
local now = tonumber(ARGV[1])
local due, inflight = P .. 'due', P .. 'inflight'
for _, id in ipairs(redis.call('ZRANGEBYSCORE', inflight, '-inf', now, 'LIMIT', 0, 100)) do
  redis.call('ZREM', inflight, id)
  local dkey = P .. 'd:' .. id
  if redis.call('EXISTS', dkey) == 1 then
    unbusy(redis.call('HGET', dkey, 'target'))
    redis.call('HDEL', dkey, 'lease')
    redis.call('RPUSH', P .. 'dlog:' .. id, ARGV[10])
    if redis.call('HINCRBY', dkey, 'stalls', 1) > tonumber(ARGV[8]) then
      redis.call('HSET', dkey, 'status', 'failed', 'next_at', '')
      settle(id, tonumber(ARGV[9]))
    else
      redis.call('HSET', dkey, 'next_at', now)
      redis.call('ZADD', due, now, id)
    end
  end
end
local out = {}
local n, max, per = 0, tonumber(ARGV[4]), tonumber(ARGV[5])
local deadline = now + tonumber(ARGV[2])
if max > 0 then
  local ready = redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, tonumber(ARGV[7]))
  for _, id in ipairs(ready) do
    if n >= max then break end
    local dkey = P .. 'd:' .. id
    local d = redis.call('HMGET', dkey, 'target', 'ep', 'url', 'client', 'type', 'payload', 'tries',
      'attempts')
    if not d[1] then
      redis.call('ZREM', due, id)
    elseif tonumber(redis.call('HGET', P .. 'busy', d[1]) or '0') >= per then
      redis.call('ZADD', due, now + tonumber(ARGV[6]), id)
    else
      redis.call('HINCRBY', P .. 'busy', d[1], 1)
      redis.call('ZREM', due, id)
      redis.call('ZADD', inflight, deadline, id)
      redis.call('HSET', dkey, 'lease', ARGV[3])
      table.insert(out, id)
      for i = 1, 8 do table.insert(out, d[i]) end
      -- The endpoint's version: dispatchers cache its url and secrets until it changes.
      local ver = false
      if d[2] and d[2] ~= '' then ver = redis.call('HGET', P .. 'ep:' .. d[2], 'ver') end
      table.insert(out, ver or '0')
      n = n + 1
    end
  end
end
local soonest = -1
for _, set in ipairs({due, inflight}) do
  local head = redis.call('ZRANGE', set, 0, 0, 'WITHSCORES')
  if head[2] and (soonest < 0 or tonumber(head[2]) < soonest) then soonest = tonumber(head[2]) end
end
return {out, string.format('%.0f', soonest)}
"""

# KEYS[1] prefix. ARGV: id, token, now, outcome (delivered|retry|failed|gone|skipped),
# attempt_json, next_at, retention_s, log_cap, disable_after_ms, gone_reason, stale_reason.
# Records one attempt and its consequences (reschedule, endpoint health) in one step.
FINISH = r"""
local id, now = ARGV[1], tonumber(ARGV[3])
local dkey = P .. 'd:' .. id
if redis.call('HGET', dkey, 'lease') ~= ARGV[2] then return 'lost' end
redis.call('ZREM', P .. 'inflight', id)
unbusy(redis.call('HGET', dkey, 'target'))
redis.call('HDEL', dkey, 'lease')
redis.call('HINCRBY', dkey, 'attempts', 1)
local log = P .. 'dlog:' .. id
redis.call('RPUSH', log, ARGV[5])
redis.call('LTRIM', log, -tonumber(ARGV[8]), -1)
local outcome = ARGV[4]
local status = 'failed'
if outcome == 'delivered' then
  status = 'delivered'
  redis.call('HSET', dkey, 'status', status, 'next_at', '')
elseif outcome == 'retry' then
  status = 'pending'
  redis.call('HINCRBY', dkey, 'tries', 1)
  redis.call('HSET', dkey, 'status', status, 'next_at', ARGV[6])
  redis.call('ZADD', P .. 'due', ARGV[6], id)
else
  redis.call('HINCRBY', dkey, 'tries', 1)
  redis.call('HSET', dkey, 'status', status, 'next_at', '')
end
local ep = redis.call('HGET', dkey, 'ep')
local ekey = P .. 'ep:' .. (ep or '')
if ep and ep ~= '' and outcome ~= 'skipped' and redis.call('EXISTS', ekey) == 1 then
  if outcome == 'delivered' then
    redis.call('HSET', ekey, 'last_success', now)
    redis.call('HDEL', ekey, 'failing_since')
  elseif outcome == 'gone' then
    disable(ep, ARGV[10])
  else
    local since = tonumber(redis.call('HGET', ekey, 'failing_since') or '')
    if not since then
      redis.call('HSET', ekey, 'failing_since', now)
    elseif now - since >= tonumber(ARGV[9]) then
      disable(ep, ARGV[11])
    end
  end
end
if status ~= 'pending' then settle(id, tonumber(ARGV[7])) end
return status
"""

# KEYS[1] prefix. ARGV: id, client, now.
# Sends a delivery again now, with a fresh retry schedule: 'missing' unless the client's.
REDELIVER = r"""
local id, now = ARGV[1], ARGV[3]
local dkey = P .. 'd:' .. id
if redis.call('HGET', dkey, 'client') ~= ARGV[2] then return 'missing' end
if redis.call('HGET', dkey, 'lease') then return 'inflight' end
redis.call('PERSIST', dkey)
redis.call('PERSIST', P .. 'dlog:' .. id)
redis.call('HSET', dkey, 'status', 'pending', 'tries', 0, 'stalls', 0, 'next_at', now)
redis.call('ZADD', P .. 'due', now, id)
wake()
return 'queued'
"""

# KEYS[1] prefix. ARGV: endpoint id, client, new secret, old secret's expiry (ms).
# The current secret keeps signing until the expiry, alongside the new one.
ROTATE = r"""
local ekey = P .. 'ep:' .. ARGV[1]
if redis.call('HGET', ekey, 'client') ~= ARGV[2] then return 0 end
local current = redis.call('HGET', ekey, 'secret')
redis.call('HSET', ekey, 'secret', ARGV[3], 'old_secret', current, 'old_until', ARGV[4])
redis.call('HINCRBY', ekey, 'ver', 1)
return 1
"""

ALL = {
    "fanout": FANOUT,
    "claim": CLAIM,
    "finish": FINISH,
    "redeliver": REDELIVER,
    "rotate": ROTATE,
}


def source(name: str) -> str:
    """The full source of a script: the shared prelude, then its body."""
    return PRELUDE + ALL[name]
