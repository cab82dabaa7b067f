-- wrk script of bench/retrieval_bench.py (gateway section).
--
--   wrk -s bench/query.lua URL/healthz                       GET, the HTTP floor
--   wrk -s bench/query.lua URL/v1/query -- BODIES KEY        POST /v1/query
--
-- BODIES is a file with one JSON request body per line; each thread walks
-- through them in turn (starting at a different line), so the load is not one
-- query repeated. KEY goes in "Authorization: Bearer". At the end one line
-- "BENCH_JSON {...}" carries the figures for the Python side to parse.

local bodies = nil
local i = 0
local nthreads = 0

function setup(thread)
  thread:set("tid", nthreads)
  nthreads = nthreads + 1
end

function init(args)
  if args[1] then
    bodies = {}
    for line in io.lines(args[1]) do
      if #line > 0 then
        bodies[#bodies + 1] = line
      end
    end
    wrk.method = "POST"
    wrk.headers["Content-Type"] = "application/json"
    wrk.headers["Authorization"] = "Bearer " .. args[2]
    -- Spread the threads over the list (tid is 0, 1, ... from setup).
    i = (tid * 97) % #bodies
  end
end

function request()
  if not bodies then
    return wrk.format()
  end
  i = i % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[i])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"err_connect":%d,"err_read":%d,"err_write":%d,"err_status":%d,"err_timeout":%d,' ..
    '"lat_mean_us":%.1f,"lat_max_us":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.mean, latency.max,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
