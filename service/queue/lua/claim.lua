--[[ claim: lease up to max_jobs queued requests to a worker; find due retries and stalls.
  KEYS[1] pending          queued members by priority and arrival
  KEYS[2] delayed          members waiting out a retry backoff, by due time
  KEYS[3] running          leased members by deadline
  KEYS[4] workers          worker ids by heartbeat deadline
  KEYS[5] idle             workers registered idle, by expiry
  KEYS[6] wake             the list idle workers block on
  KEYS[7] hand             requests handed to idle workers, taken by whichever pops first
  KEYS[8] signal           signal:<worker>, this worker's own wake-up list
  KEYS[9] deadlines        never-started requests with a queue timeout, by deadline
  ARGV[1] now              ms
  ARGV[2] lease_ms         lease length
  ARGV[3] worker           the worker's id
  ARGV[4] max_jobs         free slots: at most this many jobs
  ARGV[5] worker_ttl_ms    heartbeat validity
  ARGV[6] idle_ms          0: do not register idle; negative: a second claim lane of a worker
                           whose main loop waits (Worker._claim_lane): leave that loop's idle
                           registration and wake-up list alone
  ARGV[7] recover          '1': with due retries or expired leases, return only those
  ARGV[8] max_score        '' for none; else pop only members scored at most this (a sharded
                           operation's claim: see Queue.claim), and return the head's score
Touches only the operation's own keys: the requests' keys are declared by the scripts the
caller runs next, one per member returned (start.lua, recover.lua, promote.lua, expire.lua).
Returns {popped, stalled, due, soonest_due_or_-1, handed, expired[, head]} (head: with a
max_score, the score of the first member left in pending, '' when it is empty). With recover = '1' and any
found, only stalled (members of expired leases, left in running), due (retries whose backoff
has elapsed, left in delayed) and expired (queued requests past their Queue-Timeout, left in
deadlines), at most 100 each: the caller recovers, promotes and expires them, then claims again
with recover = '0', so they are queued (at the head) or gone before the pop. Otherwise popped, members
moved from pending to running under this lease (still 'queued' until start.lua), and handed,
the hand-offs charged to this worker that no blocking pop took (see handed(); any waiting
worker's pop may take one), counted against the free slots. Finding nothing
and idle_ms > 0, the worker is registered idle for idle_ms: the next submit to find the queue
empty hands its request straight to it.
]]
local pending = KEYS[1]
local delayed = KEYS[2]
local running = KEYS[3]
local workers = KEYS[4]
local idle = KEYS[5]
local wake = KEYS[6]
local hand = KEYS[7]
local signal = KEYS[8]
local deadlines = KEYS[9]
local now = tonumber(ARGV[1])
local lease_ms = ARGV[2]
local worker = ARGV[3]
local max_jobs = tonumber(ARGV[4])
local worker_ttl_ms = tonumber(ARGV[5])
local idle_ms = tonumber(ARGV[6])
local recover = ARGV[7]
local max_score = ARGV[8]
--- @include "includes/fmt"
--- @include "includes/unregister"
--- @include "includes/charged"
--- @include "includes/wake"
--- @include "includes/sliced"

--- @call
redis.call('ZADD', workers, now + worker_ttl_ms, worker)
redis.call('ZREMRANGEBYSCORE', workers, '-inf', now - 3600000)  -- long-dead workers
if idle_ms >= 0 then
  unregister()
  redis.call('DEL', signal)  -- a wake-up left for a wait that has ended
end
redis.call('ZREMRANGEBYSCORE', idle, '-inf', now)
if recover == '1' then
  local due = redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, 100)
  local stalled = redis.call('ZRANGEBYSCORE', running, '-inf', now, 'LIMIT', 0, 100)
  local expired = redis.call('ZRANGEBYSCORE', deadlines, '-inf', now, 'LIMIT', 0, 100)
  if #due > 0 or #stalled > 0 or #expired > 0 then
    return {{}, stalled, due, '-1', {}, expired}
  end
end
local given = take_charged()
local popped = {}
if max_jobs > #given then
  local flat
  if max_score == '' then
    flat = redis.call('ZPOPMIN', pending, max_jobs - #given)
  else
    flat = redis.call('ZRANGE', pending, '-inf', max_score, 'BYSCORE', 'LIMIT', 0,
      max_jobs - #given, 'WITHSCORES')
    for i = 1, #flat, 2 do redis.call('ZREM', pending, flat[i]) end
  end
  -- One ZADD per 500 of them (score, member pairs: unpack takes a few thousand values at
  -- most), the deadline formatted once.
  local deadline = fmt(now + tonumber(lease_ms))
  local leased = {}
  for i = 1, #flat, 2 do
    popped[#popped + 1] = flat[i]
    leased[#leased + 1] = deadline
    leased[#leased + 1] = flat[i]
  end
  sliced('ZADD', running, leased)
end
local head = nil
if max_score ~= '' then head = redis.call('ZRANGE', pending, 0, 0, 'WITHSCORES')[2] or '' end
if #popped > 0 and redis.call('ZCARD', pending) > 0 then wake_workers() end
-- Held back by max_score, the worker is not idle: work is queued.
if #popped == 0 and #given == 0 and idle_ms > 0 and (head == nil or head == '') then
  redis.call('ZADD', idle, now + idle_ms, lease_ms .. ' ' .. worker)
end
-- The soonest retry, lease or queue deadline to fall due after those handled now (an idle
-- worker wakes for it: a request with a Queue-Timeout in an idle queue fails on time).
local soonest = -1
local nextdue = redis.call('ZRANGEBYSCORE', delayed, '(' .. now, '+inf', 'WITHSCORES', 'LIMIT',
  0, 1)
if nextdue[2] then soonest = tonumber(nextdue[2]) end
local lease_next = redis.call('ZRANGEBYSCORE', running, '(' .. now, '+inf', 'WITHSCORES',
  'LIMIT', 0, 1)
if lease_next[2] and (soonest < 0 or tonumber(lease_next[2]) < soonest) then
  soonest = tonumber(lease_next[2])
end
local deadline_next = redis.call('ZRANGE', deadlines, 0, 0, 'WITHSCORES')
if deadline_next[2] and (soonest < 0 or tonumber(deadline_next[2]) < soonest) then
  soonest = tonumber(deadline_next[2])
end
if head ~= nil then return {popped, {}, {}, fmt(soonest), given, {}, head} end
return {popped, {}, {}, fmt(soonest), given, {}}
