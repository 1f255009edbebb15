-- wrk script for bench/http.sh: POST distinct CDEvents to /cdevents.
-- BATCH (environment) events per request: 1 posts one JSON object, more
-- post a JSON array.  Ids are unique per run, thread and request, so every
-- event is new to the lake (no dedup shortcut).
--
-- Each event deploys a new artifact of one of 64 services per thread, one
-- second after the previous event of the thread: what a busy delivery
-- platform sends.  (Posting the same artifact of the same service at the
-- same instant again and again made every transaction of the lake trigger
-- read the whole history of that one service, which grows with every event:
-- that measured the trigger's worst case, and the residue of earlier runs,
-- not the receiver.)
local batch = tonumber(os.getenv("BATCH") or "1")
local run = os.getenv("RUN_ID") or tostring(os.time())
local token = os.getenv("TOKEN")
local thread_id = 0
local counter = 0

setup = function(thread)
	thread_id = thread_id + 1
	thread:set("tid", thread_id)
end

local function event(id, n)
	return '{"context":{"version":"0.4.1","id":"' .. id .. '","source":"/bench/http",'
		.. '"type":"dev.cdevents.service.deployed.0.2.0","timestamp":"' .. os.date("!%Y-%m-%dT%H:%M:%SZ", 1714557600 + n % 2500000) .. '"},'
		.. '"subject":{"id":"svc/bench-' .. tostring(tid) .. '-' .. tostring(n % 64) .. '","source":"/bench/http","type":"service","content":'
		.. '{"environment":{"id":"prod"},"artifactId":"pkg:oci/app@sha256%3A' .. id .. '"}}}'
end

local headers = {["Content-Type"] = "application/json"}
if token then headers["Authorization"] = "Bearer " .. token end

request = function()
	counter = counter + 1
	local prefix = run .. "-" .. tostring(tid) .. "-" .. counter
	if batch == 1 then
		return wrk.format("POST", "/cdevents", headers, event(prefix, counter))
	end
	local parts = {}
	for i = 1, batch do parts[i] = event(prefix .. "-" .. i, counter * batch + i) end
	return wrk.format("POST", "/cdevents", headers, "[" .. table.concat(parts, ",") .. "]")
end

-- "summary <requests> <seconds> <failed>" (failed: answers >= 400 and socket
-- errors: a benchmark of failures is no benchmark), and the latency
-- histogram ("<microseconds> <count>" lines) appended to the file HIST
done = function(summary, latency, requests)
	local e = summary.errors
	io.write(string.format("summary %d %.6f %d\n", summary.requests, summary.duration / 1e6,
		e.status + e.connect + e.read + e.write + e.timeout))
	local hist = os.getenv("HIST")
	if hist then
		local f = assert(io.open(hist, "a"))
		for i = 1, #latency do
			local v, c = latency(i)
			f:write(string.format("%d %d\n", v, c))
		end
		f:close()
	end
end
