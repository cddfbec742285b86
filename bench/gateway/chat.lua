-- wrk script for bench/gateway/run.sh: a small, realistic non-streamed chat request, sent
-- identically to every target, and one machine-readable result line at the end.
--
-- The key comes from the environment (BENCH_KEY) so that it never appears on a command line.

local key = os.getenv("BENCH_KEY") or ""

wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
-- The body is bench/gateway/chat.json (run.sh passes its path), the one `latency` sends too.
local body_file = os.getenv("BENCH_BODY_FILE") or error("BENCH_BODY_FILE is not set")
local f = io.open(body_file, "rb") or error("cannot open " .. body_file)
wrk.body = f:read("*a")
f:close()

-- Latencies are in microseconds (wrk's unit). Errors are reported, never hidden: the runner
-- refuses a measurement with any non-2xx status or socket error.
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"rps":%.1f,"p50_us":%d,"p90_us":%d,"p99_us":%d,' ..
    '"mean_us":%.1f,"max_us":%d,"body_bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.mean, latency.max, #wrk.body,
    e.connect, e.read, e.write, e.status, e.timeout))
end
