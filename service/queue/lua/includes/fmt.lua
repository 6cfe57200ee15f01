-- Expects no locals.
-- A number as an integer string, rounded (tostring would print large ones in exponent form).
-- '%d' formats a C long: no trip through the floating-point printf ('%.0f', tostring and
-- '..' on a number), which showed in the server's profile.
local function fmt(n) return string.format('%d', math.floor(n + 0.5)) end
