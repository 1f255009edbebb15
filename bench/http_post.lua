-- wrk script for bench/http.sh: POST distinct CDEvents to /cdevents.
-- BATCH (environment) events per request: 1 posts one JSON object, more
-- post a JSON array.  Ids are unique per run, thread and request, so every
-- event is new to the lake (no dedup shortcut).
local batch = tonumber(os.getenv("BATCH") or "1")
local run = os.getenv("RUN_ID") or tostring(os.time())
local token = os.getenv("TOKEN")
local thread_id = 0
local counter = 0

setup = function(thread)
	thread_id = thread_id + 1
	thread:set("tid", thread_id)
end

local function event(id)
	return '{"context":{"version":"0.4.1","id":"' .. id .. '","source":"/bench/http",'
		.. '"type":"dev.cdevents.service.deployed.0.2.0","timestamp":"2024-05-01T10:00:00Z"},'
		.. '"subject":{"id":"svc/bench","source":"/bench/http","type":"service","content":'
		.. '{"environment":{"id":"prod"},"artifactId":"pkg:oci/app@sha256%3A0b31b1c02ff458ad9b7b81cbdf8f028bd54699fa151f221d1e8de6817db93427"}}}'
end

request = function()
	local headers = {["Content-Type"] = "application/json"}
	if token then headers["Authorization"] = "Bearer " .. token end
	counter = counter + 1
	local prefix = run .. "-" .. tostring(tid) .. "-" .. counter
	if batch == 1 then
		return wrk.format("POST", "/cdevents", headers, event(prefix))
	end
	local parts = {}
	for i = 1, batch do parts[i] = event(prefix .. "-" .. i) end
	return wrk.format("POST", "/cdevents", headers, "[" .. table.concat(parts, ",") .. "]")
end

-- count answers other than 201: a benchmark of failures is no benchmark
local bad = 0
response = function(status, headers, body)
	if status ~= 201 then bad = bad + 1 end
end

done = function(summary, latency, requests)
	io.write(string.format("non201 %d\n", summary.errors.status))
	io.write(string.format("p50_ms %.3f\np99_ms %.3f\n",
		latency:percentile(50) / 1000, latency:percentile(99) / 1000))
	io.write(string.format("rps %.1f\n", summary.requests / (summary.duration / 1e6)))
end
