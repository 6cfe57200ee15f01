-- settle(dkey, log, retention): a settled delivery's hash and attempt log expire after
-- `retention` seconds. Expects no locals.
local function settle(dkey, log, retention)
  redis.call('EXPIRE', dkey, retention)
  redis.call('EXPIRE', log, retention)
end
