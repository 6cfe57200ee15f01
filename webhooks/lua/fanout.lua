--[[ fanout: create the deliveries of outbox entries; lease some to the caller at once.
  Each entry gets one delivery per matching enabled endpoint of its client and one for its
  callback url. Ids derive from (op, entry, target): a fan-out retried after a crash
  re-creates nothing. Up to `slots` new deliveries whose target has a free slot are leased to
  the caller (it sends them now, with no claim); the rest are queued as due.

  KEYS[1] prefix            acceptd:{wh}:, for the derived keys below
  KEYS[2] due               pending delivery ids by next attempt time
  KEYS[3] inflight          leased delivery ids by lease deadline
  KEYS[4] busy              sends in flight per target
  KEYS[5] wake              the list idle dispatchers block on
  ARGV[1] now               milliseconds
  ARGV[2] cap               how many delivery ids an endpoint's index keeps
  ARGV[3] token             the caller's lease token
  ARGV[4] deadline          the lease deadline (ms) of deliveries leased to the caller
  ARGV[5] per_target        sends in flight allowed per target
  ARGV[6] slots             how many new deliveries the caller can take now
  each outbox entry:
  KEYS[+1] endpoints        eps:<client>, the client's endpoint ids
  KEYS[+2] callback         d:<callback_id>, the callback's delivery (d: alone without one)
  ARGV[+1] client           the request's client
  ARGV[+2] event_type       request.<status>
  ARGV[+3] op               the request's operation
  ARGV[+4] entry            the outbox stream entry id
  ARGV[+5] payload          the event (JSON)
  ARGV[+6] callback_url     the request's callback url ('' for none)
  ARGV[+7] callback_target  the callback url's origin: its busy target
  ARGV[+8] request_id       the request's id
  ARGV[+9] callback_id      the callback's delivery id ('' for none)

  Derived keys (not yet declared):
    ep:<id>     the client's endpoints, listed in `endpoints`
    d:<id>      the deliveries to those endpoints (their ids derive from the endpoint ids)
    epd:<id>    those endpoints' delivery indexes

  Returns {{new ids of each entry}, {entry index, id, target, endpoint, url, version}...}.
]]
local prefix = KEYS[1]
local due = KEYS[2]
local inflight = KEYS[3]
local busy = KEYS[4]
local wake = KEYS[5]
local now = ARGV[1]
local cap = tonumber(ARGV[2])
local token = ARGV[3]
local deadline = ARGV[4]
local per_target = tonumber(ARGV[5])
local slots = tonumber(ARGV[6])
-- Each entry as a table named after the header's per-entry KEYS and ARGV.
local entries = {}
for n = 0, (#KEYS - 5) / 2 - 1 do
  local k, a = 5 + 2 * n, 6 + 9 * n
  entries[n + 1] = {
    endpoints = KEYS[k + 1],
    callback = KEYS[k + 2],
    client = ARGV[a + 1],
    event_type = ARGV[a + 2],
    op = ARGV[a + 3],
    entry = ARGV[a + 4],
    payload = ARGV[a + 5],
    callback_url = ARGV[a + 6],
    callback_target = ARGV[a + 7],
    request_id = ARGV[a + 8],
    callback_id = ARGV[a + 9],
  }
end

--- @include "has"
--- @include "wake"

local created_all, leased, queued = {}, {}, false
local listed = {}
-- A client's enabled endpoints, read once per call however many of its entries it holds.
local function endpoints_of(e)
  local list = listed[e.client]
  if list then return list end
  list = {}
  for _, ep in ipairs(redis.call('ZRANGE', e.endpoints, 0, -1)) do
    local h = redis.call('HMGET', prefix .. 'ep:' .. ep, 'disabled', 'events', 'operations', 'ver')
    if h[1] == '0' then table.insert(list, {ep, h[2], h[3], h[4] or '0'}) end
  end
  listed[e.client] = list
  return list
end
for index, e in ipairs(entries) do
  local created = {}
  local function deliver(dkey, id, target, ep, url, ver)
    if redis.call('EXISTS', dkey) == 1 then return end
    redis.call('HSET', dkey, 'id', id, 'client', e.client, 'ep', ep, 'url', url, 'target', target,
      'type', e.event_type, 'op', e.op, 'rid', e.request_id, 'payload', e.payload,
      'status', 'pending', 'attempts', 0, 'tries', 0, 'stalls', 0, 'created', now, 'next_at', now)
    if slots > 0 and tonumber(redis.call('HGET', busy, target) or '0') < per_target then
      slots = slots - 1
      redis.call('HINCRBY', busy, target, 1)
      redis.call('ZADD', inflight, deadline, id)
      redis.call('HSET', dkey, 'lease', token)
      for _, v in ipairs({index - 1, id, target, ep, url, ver}) do table.insert(leased, v) end
    else
      redis.call('ZADD', due, now, id)
      queued = true
    end
    if ep ~= '' then
      local epd = prefix .. 'epd:' .. ep
      redis.call('ZADD', epd, now, id)
      redis.call('ZREMRANGEBYRANK', epd, 0, -(cap + 1))
    end
    table.insert(created, id)
  end
  for _, ep in ipairs(endpoints_of(e)) do
    if has(ep[2], e.event_type) and (ep[3] == '' or has(ep[3], e.op)) then
      -- The same formula as webhooks.store.derived_delivery_id (which names the callback's).
      local id = 'msg_' .. string.sub(redis.sha1hex(e.op .. '/' .. e.entry .. '/' .. ep[1]), 1, 26)
      deliver(prefix .. 'd:' .. id, id, ep[1], ep[1], '', ep[4])
    end
  end
  if e.callback_url ~= '' then
    deliver(e.callback, e.callback_id, e.callback_target, '', e.callback_url, '0')
  end
  table.insert(created_all, created)
end
if queued then wake_up() end
return {created_all, leased}
