-- wrk script for bench/http.sh: POST distinct CDEvents to /cdevents.
-- BATCH (environment) events per request: 1 posts one JSON object, more
-- post a JSON array.  Ids are unique per run, thread and request, so every
-- event is new to the lake (no dedup shortcut).
--
-- EVENTS (environment) says which events:
--   deployments (default): each event deploys a new artifact of one of 64
--     services per thread, one second after the previous event of the
--     thread.  The lake trigger's worst case: every event updates what runs
--     where, in the ingest transaction.  (Posting the same artifact of the
--     same service at the same instant again and again made every
--     transaction of the trigger read the whole history of that one
--     service, which grows with every event: that measured the residue of
--     earlier runs, not the receiver.)
--   delivery: what a delivery platform sends, in cycles of 16 events per
--     pipeline run: queued, started, three tasks started and finished,
--     five test cases, finished, its artifact published, then deployed (1
--     event in 16 keeps the inventory; the others are summarised later by
--     the summaries worker).  Run, task, test and artifact ids carry
--     RUN_ID, so that every round's are new.
local batch = tonumber(os.getenv("BATCH") or "1")
local run = os.getenv("RUN_ID") or tostring(os.time())
local token = os.getenv("TOKEN")
local thread_id = 0
local counter = 0

setup = function(thread)
	thread_id = thread_id + 1
	thread:set("tid", thread_id)
end

local events = os.getenv("EVENTS") or "deployments"

-- one CDEvent 0.4.1: context id, type, instant n, subject id, type, content
local function cdevent(id, ctype, n, sid, stype, content)
	return '{"context":{"version":"0.4.1","id":"' .. id .. '","source":"/bench/http",'
		.. '"type":"dev.cdevents.' .. ctype .. '","timestamp":"' .. os.date("!%Y-%m-%dT%H:%M:%SZ", 1714557600 + n % 2500000) .. '"},'
		.. '"subject":{"id":"' .. sid .. '","source":"/bench/http","type":"' .. stype .. '","content":' .. content .. '}}'
end

local function deployment(id, n, svc, artifact)
	return cdevent(id, "service.deployed.0.2.0", n, svc, "service",
		'{"environment":{"id":"prod"},"artifactId":"' .. artifact .. '"}')
end

-- event n of a delivery platform's cycle of 16 (see above)
local function delivery_event(id, n)
	local k = n % 16
	local cycle = run .. "-" .. tostring(tid) .. "-" .. tostring(math.floor(n / 16))
	local runid = "run/bench-" .. cycle
	local artifact = "pkg:oci/app@sha256%3A" .. cycle
	local url = ',"url":"https://ci.example/' .. runid .. '"'
	if k == 0 or k == 1 then
		return cdevent(id, k == 0 and "pipelinerun.queued.0.2.0" or "pipelinerun.started.0.2.0", n,
			runid, "pipelineRun", '{"pipelineName":"build"' .. url .. '}')
	elseif k <= 7 then
		local task = tostring(math.floor((k - 2) / 2))
		local fin = k % 2 == 1
		return cdevent(id, fin and "taskrun.finished.0.2.0" or "taskrun.started.0.2.0", n,
			runid .. "/task-" .. task, "taskRun",
			'{"taskName":"task-' .. task .. '"' .. url .. ',"pipelineRun":{"id":"' .. runid .. '"}'
			.. (fin and ',"outcome":"success"' or '') .. '}')
	elseif k <= 12 then
		return cdevent(id, "testcaserun.finished.0.2.0", n, runid .. "/test-" .. tostring(k), "testCaseRun",
			'{"outcome":"pass","environment":{"id":"ci"},"testCase":{"id":"bench-test-' .. tostring(k)
			.. '","name":"bench test ' .. tostring(k) .. '"}}')
	elseif k == 13 then
		return cdevent(id, "pipelinerun.finished.0.2.0", n, runid, "pipelineRun",
			'{"pipelineName":"build"' .. url .. ',"outcome":"success"}')
	elseif k == 14 then
		return cdevent(id, "artifact.published.0.2.0", n, artifact, "artifact", '{}')
	end
	return deployment(id, n, "svc/bench-" .. tostring(tid) .. "-" .. tostring(math.floor(n / 16) % 64), artifact)
end

local function event(id, n)
	if events == "delivery" then
		return delivery_event(id, n)
	end
	return deployment(id, n, "svc/bench-" .. tostring(tid) .. "-" .. tostring(n % 64), "pkg:oci/app@sha256%3A" .. id)
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
