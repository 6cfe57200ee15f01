-- Expects no locals.
-- A number as an integer string (tostring would print large ones in exponent form).
local function fmt(n) return string.format('%.0f', n) end
