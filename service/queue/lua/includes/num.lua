-- Expects no locals.
-- tonumber, remembered for the run: Lua's tonumber parses through the C library's strtod
-- (about 1,400 instructions a call in callgrind), and a merged run converts the same strings
-- (its now, the operation's limits, timestamps of requests created in the same millisecond)
-- for each of its calls. Like tonumber, nil for a string that is not a number.
local num_memo
RESET[#RESET + 1] = function() num_memo = {} end
local function num(s)
  local v = num_memo[s]
  if v == nil then
    v = tonumber(s)
    if v ~= nil then num_memo[s] = v end
  end
  return v
end
