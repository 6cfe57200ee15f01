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

# KEYS[1] prefix. ARGV: now, index cap, token, lease deadline, per_target, slots, then per
# outbox entry: client, type, op, stream entry id, payload, callback url, callback target,
# request id.
# Creates one delivery per matching enabled endpoint and one for the callback url. Ids derive
# from (op, entry, target): a fan-out retried after a crash re-creates nothing. Up to ``slots``
# new deliveries whose target has a free slot are leased to the caller at once (it sends them
# now, with no claim); the rest are queued as due for any dispatcher.
# Returns {{new ids of each entry}, {entry index, id, target, endpoint, url, version}...}.
FANOUT = r"""
local now, cap = ARGV[1], tonumber(ARGV[2])
local token, deadline, per, slots = ARGV[3], ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local created_all, leased, queued = {}, {}, false
local endpoints = {}
-- A client's endpoints, read once per call however many of its entries the batch holds.
local function endpoints_of(client)
  local list = endpoints[client]
  if list then return list end
  list = {}
  for _, ep in ipairs(redis.call('ZRANGE', P .. 'eps:' .. client, 0, -1)) do
    local e = redis.call('HMGET', P .. 'ep:' .. ep, 'disabled', 'events', 'operations', 'ver')
    if e[1] == '0' then table.insert(list, {ep, e[2], e[3], e[4] or '0'}) end
  end
  endpoints[client] = list
  return list
end
for i = 7, #ARGV, 8 do
  local client, etype, op, entry = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local index = (i - 7) / 8
  local created = {}
  local function deliver(target, idpart, ep, url, ver)
    local id = 'msg_' .. string.sub(redis.sha1hex(op .. '/' .. entry .. '/' .. idpart), 1, 26)
    local dkey = P .. 'd:' .. id
    if redis.call('EXISTS', dkey) == 1 then return end
    redis.call('HSET', dkey, 'id', id, 'client', client, 'ep', ep, 'url', url, 'target', target,
      'type', etype, 'op', op, 'rid', ARGV[i + 7], 'payload', ARGV[i + 4], 'status', 'pending',
      'attempts', 0, 'tries', 0, 'stalls', 0, 'created', now, 'next_at', now)
    if slots > 0 and tonumber(redis.call('HGET', P .. 'busy', target) or '0') < per then
      slots = slots - 1
      redis.call('HINCRBY', P .. 'busy', target, 1)
      redis.call('ZADD', P .. 'inflight', deadline, id)
      redis.call('HSET', dkey, 'lease', token)
      for _, v in ipairs({index, id, target, ep, url, ver}) do table.insert(leased, v) end
    else
      redis.call('ZADD', P .. 'due', now, id)
      queued = true
    end
    if ep ~= '' then
      local epd = P .. 'epd:' .. ep
      redis.call('ZADD', epd, now, id)
      redis.call('ZREMRANGEBYRANK', epd, 0, -(cap + 1))
    end
    table.insert(created, id)
  end
  for _, e in ipairs(endpoints_of(client)) do
    if has(e[2], etype) and (e[3] == '' or has(e[3], op)) then
      deliver(e[1], e[1], e[1], '', e[4])
    end
  end
  if ARGV[i + 5] ~= '' then deliver(ARGV[i + 6], 'callback', '', ARGV[i + 5], '0') end
  table.insert(created_all, created)
end
if queued then wake() end
return {created_all, leased}
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
      -- The endpoint's version: dispatchers cache its url and secrets until it changes;
      -- 'gone' once it is deleted.
      local ver = '0'
      if d[2] and d[2] ~= '' then
        local e = redis.call('HMGET', P .. 'ep:' .. d[2], 'ver', 'id')
        ver = e[2] and (e[1] or '0') or 'gone'
      end
      table.insert(out, ver)
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
# Sends a delivery again now, with a fresh retry schedule: {'missing'} unless the client's,
# else {'queued' or 'inflight', its hash (flat), its attempt log} as of this step (a
# dispatcher may send it before the caller could read it back).
REDELIVER = r"""
local id, now = ARGV[1], ARGV[3]
local dkey = P .. 'd:' .. id
if redis.call('HGET', dkey, 'client') ~= ARGV[2] then return {'missing'} end
local outcome = 'inflight'
if not redis.call('HGET', dkey, 'lease') then
  outcome = 'queued'
  redis.call('PERSIST', dkey)
  redis.call('PERSIST', P .. 'dlog:' .. id)
  redis.call('HSET', dkey, 'status', 'pending', 'tries', 0, 'stalls', 0, 'next_at', now)
  redis.call('ZADD', P .. 'due', now, id)
  wake()
end
return {outcome, redis.call('HGETALL', dkey), redis.call('LRANGE', P .. 'dlog:' .. id, 0, -1)}
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
