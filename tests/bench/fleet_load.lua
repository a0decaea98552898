-- fleet_load.lua - wrk script for tests/bench/fleet_load.sh: every request
-- POSTs the PNG named by $FLEET_LOAD_IMAGE to /v1/classify; done() prints
-- one JSON line (throughput, latency percentiles, errors of every kind,
-- non-2xx answers) for the report.
local f = assert(io.open(os.getenv("FLEET_LOAD_IMAGE"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "image/png"
wrk.path = "/v1/classify?top_k=1"

local non2xx = 0
local threads = {}

function setup(thread)
	table.insert(threads, thread)
end

function init(args)
	bad = 0
end

function response(status, headers, body)
	if status ~= 200 then
		bad = bad + 1
	end
end

function done(summary, latency, requests)
	for _, t in ipairs(threads) do
		non2xx = non2xx + t:get("bad")
	end
	local e = summary.errors
	io.write(string.format(
		'{"requests":%d,"duration_s":%.3f,"rps":%.2f,' ..
		'"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,"mean_ms":%.3f,' ..
		'"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"non_200":%d}\n',
		summary.requests, summary.duration / 1e6,
		summary.requests / (summary.duration / 1e6),
		latency:percentile(50) / 1e3, latency:percentile(90) / 1e3,
		latency:percentile(99) / 1e3, latency.max / 1e3, latency.mean / 1e3,
		e.connect, e.read, e.write, e.status, e.timeout, non2xx))
end
