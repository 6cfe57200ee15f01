-- has(list, item): whether the comma-separated `list` holds `item`. Expects no locals.
local function has(list, item)
  return string.find(',' .. list .. ',', ',' .. item .. ',', 1, true) ~= nil
end
