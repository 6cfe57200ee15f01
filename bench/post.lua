-- wrk script: POST a small JSON body. Environment:
--   BENCH_PREFER  Prefer header value ("" for none; default "respond-async")
--   BENCH_LIMIT   stop this thread after that many responses (0: run for the duration)
wrk.method = "POST"
wrk.body = '{"hello":"world","n":1}'
wrk.headers["Content-Type"] = "application/json"
local prefer = os.getenv("BENCH_PREFER") or "respond-async"
if prefer ~= "" then
  wrk.headers["Prefer"] = prefer
end

local limit = tonumber(os.getenv("BENCH_LIMIT") or "0") or 0
local count = 0

if limit > 0 then
  response = function(status, headers, body)
    count = count + 1
    if count >= limit then
      wrk.thread:stop()
    end
  end
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"status_errors":%d,"connect_errors":%d,' ..
    '"read_errors":%d,"write_errors":%d,"timeouts":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
