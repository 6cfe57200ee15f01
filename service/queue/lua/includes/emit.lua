-- Expects locals: events_channel, watched_channel (channel names).
-- rk: the request's keys {record, ev, glob, cev}; ev may be nil where the request cannot be
-- streamed yet (sse unset).
--- @include "includes/fmt"
--- @include "includes/snapshot"
-- A client's kept events (cev) are trimmed by age: glob's value is how many ms to keep (set by
-- the all-requests stream, follow.lua), measured back from the id just added (this node's
-- clock); once per stream per run, with its EXPIRE, and a count bound on every add.
local trimmed_of
local CEV_MAX_ENTRIES = 100000
-- Publish one state change; its number (evseq) increases per request. Events are also kept
-- for resuming streams, but only where a stream asked for it (no cost otherwise).
-- Neither a client's glob flag nor the events channel's subscribers can change during one
-- script run: each is asked once per run, which spares the calls merged into one run (a
-- tick's submits or finishes, a bulk submit's items) two commands each.
-- evseq: the event's number when the caller wrote it already (with a new record or in the HSET
-- of its change), else counted here.
local globbed_of, subscribers
RESET[#RESET + 1] = function() trimmed_of, globbed_of, subscribers = {}, {}, nil end
-- The client's all-requests stream flag (its keep, in ms), false when it streams nothing;
-- asked once per run and client.
local function globbed_for(rk)
  local globbed = globbed_of[rk.glob]
  if globbed == nil then
    globbed = redis.call('GET', rk.glob)  -- false when unset
    globbed_of[rk.glob] = globbed
  end
  return globbed
end
local function emit(rk, rec, kind, evseq)
  local n = evseq or redis.call('HINCRBY', rk.record, 'evseq', 1)
  if type(n) ~= 'string' then n = fmt(n) end
  rec['evseq'] = n
  local st = rec['status']
  -- A waiting caller needs only the outcome; a stream needs every change.
  local watched = rec['sse'] == '1' or (rec['wait'] == '1' and kind == 'status' and
    (st == 'succeeded' or st == 'failed' or st == 'canceled'))
  -- includes/heard written out: this runs for every change of every request.
  local globbed = globbed_of[rk.glob]
  if globbed == nil then globbed = globbed_for(rk) end
  if not watched and not globbed then
    if subscribers == nil then subscribers = redis.call('PUBSUB', 'NUMSUB', events_channel)[2] end
    if subscribers == 0 then
      return  -- nobody could see this event: skip encoding it (most of a busy queue's events)
    end
  end
  local body
  if rec['wait'] == '1' and rec['result'] and #rec['result'] <= 65536 then
    -- A caller waits for this outcome: hand it the result too, sparing it a read.
    body = cjson.encode({kind = kind, rec = snapshot(rec), res = rec['result']})
  else
    body = cjson.encode({kind = kind, rec = snapshot(rec)})
  end
  if rec['sse'] == '1' then
    local ek = rk.ev
    if redis.call('RPUSH', ek, body) > 64 then redis.call('LTRIM', ek, -64, -1) end
    local keep = 604800
    if st == 'succeeded' or st == 'failed' or st == 'canceled' then keep = tonumber(rec['ttl']) end
    redis.call('EXPIRE', ek, keep)
  end
  local gid = '-'
  if globbed then
    gid = redis.call('XADD', rk.cev, 'MAXLEN', '~', CEV_MAX_ENTRIES, '*', 'e', body)
    if not trimmed_of[rk.cev] then
      trimmed_of[rk.cev] = true
      local keep = tonumber(globbed) or 60000
      if keep < 1000 then keep = 60000 end  -- a flag of an older version ('1')
      redis.call('XTRIM', rk.cev, 'MINID', '~', tonumber(string.match(gid, '^%d+')) - keep)
      redis.call('EXPIRE', rk.cev, 86400)
    end
  end
  -- "<id> <client> <stream id> <json>": subscribers route before parsing any JSON.
  local head = rec['id'] .. ' ' .. rec['client'] .. ' ' .. gid .. ' '
  redis.call('PUBLISH', events_channel, head .. body)
  -- API processes listen only to events someone waits for or streams: they never decode the
  -- rest, which is most of the traffic.
  if watched or globbed then
    redis.call('PUBLISH', watched_channel, head .. body)
  end
end
