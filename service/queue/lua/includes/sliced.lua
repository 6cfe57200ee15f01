-- Expects no locals.
-- One command over a long list of arguments, in slices of 1,000 (unpack takes a few thousand
-- values at most): ZADD's score, member pairs stay whole.
local function sliced(command, key, list)
  for i = 1, #list, 1000 do
    redis.call(command, key, unpack(list, i, math.min(i + 999, #list)))
  end
end
