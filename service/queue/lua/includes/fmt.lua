-- Expects no locals.
-- A number as an integer string, rounded (tostring would print large ones in exponent form).
-- '%d' formats a C long: no trip through the floating-point printf ('%.0f', tostring and
-- '..' on a number), which showed in the server's profile. Remembered for the run: a merged
-- run formats the same times (its now, a result's expiry) for each of its calls.
local fmt_memo
RESET[#RESET + 1] = function() fmt_memo = {} end
local function fmt(n)
  local s = fmt_memo[n]
  if s == nil then
    s = string.format('%d', math.floor(n + 0.5))
    fmt_memo[n] = s
  end
  return s
end
