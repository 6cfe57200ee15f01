-- Expects no locals.
-- A job handed to a worker, newline-separated with the input last (it may hold newlines;
-- client names may not): id, token, attempt, timeout, max attempts, backoff, created, client.
-- service.queue.store parses this layout. Timeout, max attempts and backoff are the submitting
-- API's and unused: this release's workers run with their own operation settings (a record
-- holds none); the fields stay for workers of the release before it, in a rolling update.
local function handed(rec, token, input)
  return table.concat({rec['id'], token, rec['attempt'], rec['timeout'], rec['max_att'],
    rec['backoff'], rec['created'], rec['client'], input}, '\n')
end
