--[[ follow: an all-requests stream opens: keep a client's events of one operation (shard), and
say where its kept events end now.
  KEYS[1] glob             glob:<client>, set: the client's events are kept in cev
  KEYS[2] cev              cev:<client>, the client's kept events of this operation (shard)
  ARGV[1] ttl              seconds the flag lives (the open stream refreshes it)
  ARGV[2] keep_ms          ms of events cev keeps (the flag's value: emit.lua trims by it)
Returns {seconds, microseconds} of this node's clock and cev's last id ('' when it holds none).
An event kept after this run has an id above both: a stream's ids only grow, and a new id is at
least its node's clock.
]]
local glob = KEYS[1]
local cev = KEYS[2]
local ttl = ARGV[1]
local keep_ms = ARGV[2]

--- @call
local t = redis.call('TIME')
redis.call('SET', glob, keep_ms, 'EX', ttl)
local last = redis.call('XREVRANGE', cev, '+', '-', 'COUNT', 1)
return {t[1], t[2], last[1] and last[1][1] or ''}
