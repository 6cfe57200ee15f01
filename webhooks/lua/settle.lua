-- settle(delivery_key, log_key, seconds): a settled delivery's hash and attempt log expire
-- after `seconds`. Expects no locals.
local function settle(delivery_key, log_key, seconds)
  redis.call('EXPIRE', delivery_key, seconds)
  redis.call('EXPIRE', log_key, seconds)
end
