-- wrk script: every request carries a cookie picked at random from the file
-- BENCH_COOKIES (one "name=value" a line, the live sessions created before
-- timing). BENCH_MODE=cart requests /add_to_cart/item-<1..50>/, read /cart/.
-- done() prints one line "BENCH_JSON {...}" that the runner parses.
local cookies = {}
for line in io.lines(os.getenv("BENCH_COOKIES")) do
  if #line > 0 then cookies[#cookies + 1] = line end
end
local mode = os.getenv("BENCH_MODE") or "cart"
local counter = 0

function init(args)
  math.randomseed(os.time() + math.floor(os.clock() * 1e6))
end

function request()
  local cookie = cookies[math.random(#cookies)]
  local path
  if mode == "read" then
    path = "/cart/"
  else
    path = "/add_to_cart/item-" .. math.random(50) .. "/"
  end
  return wrk.format("GET", path, { ["Cookie"] = cookie })
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"mean_us":%.1f,' ..
    '"non2xx":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, e.status, e.connect, e.read, e.write, e.timeout))
end
