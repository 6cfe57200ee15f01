--[[ fanout: create the deliveries of outbox entries; lease some to the caller at once.
  The caller read the entries' clients' endpoints and gives one item per (entry, matching
  endpoint) and per callback url. Each endpoint is checked again as it is now: one deleted,
  disabled or no longer subscribed since that read gets no delivery (as if its change came
  first); one created since gets none (as if it came after). Ids derive from (op, entry,
  target), so a fan-out retried after a crash finds its deliveries and re-creates nothing.
  Up to `slots` new deliveries whose target has a free slot are leased to the caller (it
  sends them now, with no claim); the rest are queued as due.

  KEYS[1] due               pending deliveries (id and target) by next attempt time
  KEYS[2] inflight          leased delivery ids by lease deadline
  KEYS[3] busy              sends in flight per target
  KEYS[4] wake              the list idle dispatchers block on
  ARGV[1] now               milliseconds
  ARGV[2] cap               how many delivery ids an endpoint's index keeps
  ARGV[3] token             the caller's lease token
  ARGV[4] deadline          the lease deadline (ms) of deliveries leased to the caller
  ARGV[5] per_target        sends in flight allowed per target
  ARGV[6] slots             how many new deliveries the caller can take now
  ARGV[7] request_cap       how many delivery ids a request's index keeps
  ARGV[8] request_ttl       seconds a request's index is kept after its latest delivery
  each item (one delivery):
  KEYS[+1] delivery         d:<id>, the delivery's hash
  KEYS[+2] deliveries       epd:<endpoint>, its endpoint's delivery index (epd: for a callback)
  KEYS[+3] endpoint         ep:<endpoint>, its endpoint (ep: for a callback)
  KEYS[+4] requested        rqd:<request>, its request's delivery index
  ARGV[+1] id               the delivery's id
  ARGV[+2] target           its busy target: the endpoint id, or the callback url's origin
  ARGV[+3] ep               the endpoint id ('' for a callback)
  ARGV[+4] url              the callback url ('' for an endpoint)
  ARGV[+5] client           the request's client
  ARGV[+6] event_type       request.<status>
  ARGV[+7] op               the request's operation
  ARGV[+8] request_id       the request's id
  ARGV[+9] payload          the event (JSON); '' for the previous item's (the same entry's)

  Returns {{the (0-based) index of each item created}, {item index, endpoint version}... of
  those leased to the caller}.
]]
local due = KEYS[1]
local inflight = KEYS[2]
local busy = KEYS[3]
local wake = KEYS[4]
local now = ARGV[1]
local cap = tonumber(ARGV[2])
local token = ARGV[3]
local deadline = ARGV[4]
local per_target = tonumber(ARGV[5])
local slots = tonumber(ARGV[6])
local request_cap = tonumber(ARGV[7])
local request_ttl = tonumber(ARGV[8])

--- @include "includes/has"
--- @include "includes/wake"
--- @include "includes/member"

-- An endpoint's state, read once per call however many items it has (set for each).
local endpoints
-- The endpoint's version if it still wants the item ('0' for a callback), else nil.
local function wanted(it)
  if it.ep == '' then return '0' end
  local e = endpoints[it.endpoint]
  if not e then
    e = redis.call('HMGET', it.endpoint, 'disabled', 'events', 'operations', 'ver')
    endpoints[it.endpoint] = e
  end
  if e[1] ~= '0' or not has(e[2], it.event_type) or not (e[3] == '' or has(e[3], it.op)) then
    return nil
  end
  return e[4] or '0'
end

--- @call
endpoints = {}
-- Each item as a table named after the header's per-item KEYS and ARGV.
local items = {}
for n = 0, (#KEYS - 4) / 4 - 1 do
  local k, a = 4 + 4 * n, 8 + 9 * n
  items[n + 1] = {
    delivery = KEYS[k + 1],
    deliveries = KEYS[k + 2],
    endpoint = KEYS[k + 3],
    requested = KEYS[k + 4],
    id = ARGV[a + 1],
    target = ARGV[a + 2],
    ep = ARGV[a + 3],
    url = ARGV[a + 4],
    client = ARGV[a + 5],
    event_type = ARGV[a + 6],
    op = ARGV[a + 7],
    request_id = ARGV[a + 8],
    payload = ARGV[a + 9],
  }
end
local created, leased, queued = {}, {}, false
local payload = ''
for i, it in ipairs(items) do
  if it.payload ~= '' then payload = it.payload end
  local ver = wanted(it)
  if ver and redis.call('EXISTS', it.delivery) == 0 then
    redis.call('HSET', it.delivery, 'id', it.id, 'client', it.client, 'ep', it.ep, 'url', it.url,
      'target', it.target, 'type', it.event_type, 'op', it.op, 'rid', it.request_id,
      'payload', payload, 'status', 'pending', 'attempts', 0, 'tries', 0, 'stalls', 0,
      'created', now, 'next_at', now)
    if slots > 0 and tonumber(redis.call('HGET', busy, it.target) or '0') < per_target then
      slots = slots - 1
      redis.call('HINCRBY', busy, it.target, 1)
      redis.call('ZADD', inflight, deadline, it.id)
      redis.call('HSET', it.delivery, 'lease', token)
      table.insert(leased, i - 1)
      table.insert(leased, ver)
    else
      redis.call('ZADD', due, now, due_member(it.id, it.target))
      queued = true
    end
    if it.ep ~= '' then
      redis.call('ZADD', it.deliveries, now, it.id)
      redis.call('ZREMRANGEBYRANK', it.deliveries, 0, -(cap + 1))
    end
    redis.call('ZADD', it.requested, now, it.id)
    redis.call('ZREMRANGEBYRANK', it.requested, 0, -(request_cap + 1))
    redis.call('EXPIRE', it.requested, request_ttl)
    table.insert(created, i - 1)
  end
end
if queued then wake_up() end
return {created, leased}
