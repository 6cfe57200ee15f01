-- Expects locals: tput (the throughput buckets).
-- Finishes and total run time (ms) over the last minute.
local function throughput(at_ms)
  local oldest = math.floor(at_ms / 5000) - 11
  local n, d = 0, 0
  local t = redis.call('HGETALL', tput)
  for i = 1, #t, 2 do
    local b = tonumber(string.sub(t[i], 3))
    if b >= oldest then
      if string.sub(t[i], 1, 1) == 'n' then n = n + tonumber(t[i + 1])
      else d = d + tonumber(t[i + 1]) end
    end
  end
  return n, d
end
