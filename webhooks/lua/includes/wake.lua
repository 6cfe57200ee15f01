-- wake_up(): tells an idle dispatcher there is work. Expects the local `wake` (the list they
-- block on); it keeps at most one marker however often scripts signal before one looks.
local function wake_up()
  redis.call('LPUSH', wake, '1')
  redis.call('LTRIM', wake, 0, 0)
end
