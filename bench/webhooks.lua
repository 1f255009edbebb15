-- wrk script for bench/webhooks.sh.  MODE=webhook posts GitHub deliveries
-- (workflow_run, workflow_job) built from the templates in DIR with the
-- signatures precomputed there; MODE=cdevents posts the CDEvents those
-- deliveries produce to /cdevents.  Requests FROM .. FROM+COUNT-1 are shared
-- among the threads; a thread that has sent its share stops and leaves a
-- marker file, so the script knows when the chunk is done (it then idles
-- with GET /healthz, whose answers are not counted).  The marker holds the
-- wall-clock times of the thread's first request and last answer: the chunk
-- is timed from these, not from the shell, so neither the client's start-up
-- (reading 20,000 signatures) nor the shell's polling counts.
local mode = os.getenv("MODE") or "webhook"
local dir = os.getenv("DIR")
local from = tonumber(os.getenv("FROM") or "0")
local count = tonumber(os.getenv("COUNT") or "1000")
local route = os.getenv("ROUTE") or "bench-github"
local nthreads = tonumber(os.getenv("THREADS") or "1")
local thread_id = 0
local ffi = require("ffi")
ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } cdviz_bench_ts;
int clock_gettime(int clock, cdviz_bench_ts *ts);
]]
local ts = ffi.new("cdviz_bench_ts")

-- CLOCK_REALTIME, comparable across threads and with date +%s.%N
local function wall()
	ffi.C.clock_gettime(0, ts)
	return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end
local first_sent

setup = function(thread)
	thread:set("tid", thread_id)
	thread_id = thread_id + 1
end

-- A template as the pieces between its __ID__ marks: table.concat(pieces,
-- id) is the body.  gsub scanned the 22 KB template at every request, and
-- the client shares the machine's two cores with the server.
local function slurp(name)
	local f = assert(io.open(dir .. "/" .. name, "rb"))
	local s = f:read("*a")
	local pieces, pos = {}, 1
	f:close()
	while true do
		local b, e = s:find("__ID__", pos, true)
		if b == nil then
			pieces[#pieces + 1] = s:sub(pos)
			return pieces
		end
		pieces[#pieces + 1] = s:sub(pos, b - 1)
		pos = e + 1
	end
end

local templates
local sigs = {}
local queue = {}
local requests = {}
local next_i = 1
local answered = 0

-- Request i, as it goes on the wire.
local function build(i)
	local kind = (i % 2 == 0) and "run" or "job"
	local id = tostring(1000000000 + i)
	local body = table.concat(templates[kind], id)
	if mode == "webhook" then
		local s = sigs[i]
		return wrk.format("POST", "/webhooks/" .. route, {
			["Content-Type"] = "application/json",
			["X-GitHub-Event"] = (kind == "run") and "workflow_run" or "workflow_job",
			["X-GitHub-Delivery"] = "bench-" .. id,
			["X-GitHub-Hook-ID"] = "4242",
			["X-Hub-Signature-256"] = "sha256=" .. s[3],
		}, body)
	end
	return wrk.format("POST", "/cdevents", {["Content-Type"] = "application/json"}, body)
end

init = function(args)
	if mode == "webhook" then
		templates = {run = slurp("run.json"), job = slurp("job.json")}
		for line in io.lines(dir .. "/sigs.txt") do
			local i, kind, id, sig = line:match("^(%d+) (%a+) (%d+) (%x+)$")
			sigs[tonumber(i)] = {kind, id, sig}
		end
	else
		templates = {run = slurp("cd_run.json"), job = slurp("cd_job.json")}
	end
	for i = from + tid, from + count - 1, nthreads do
		queue[#queue + 1] = i
	end
	-- Every request of the share is built before the first is sent (and
	-- the clock starts; see ready()): building a 22 KB delivery costs the
	-- client sixteen times what an event does, CPU it would take from the
	-- server on a machine that runs both.
	for k, i in ipairs(queue) do
		requests[k] = build(i)
	end
	-- wrk runs the threads' init() one after another and starts each
	-- thread after its own: the last one's says that all are ready
	if tid == nthreads - 1 then
		local f = assert(io.open(dir .. "/go", "w"))
		f:close()
	end
end

-- Whether every thread has built its requests (until then a thread only
-- checks health: an earlier thread sending while a later one builds would
-- time the building, on the webhook side only).
local go = false
local function ready()
	if not go then
		local f = io.open(dir .. "/go", "r")
		if f ~= nil then
			f:close()
			go = true
		end
	end
	return go
end

-- wrk calls request() once on the first thread to check the script before
-- running: that call must not use up a delivery
local verified = false

request = function()
	if tid == 0 and not verified then
		verified = true
		return wrk.format("GET", "/healthz")
	end
	local r = requests[next_i]
	if r == nil or not ready() then
		-- not started yet, or the share is sent: health checks, not counted
		return wrk.format("GET", "/healthz")
	end
	requests[next_i] = nil
	next_i = next_i + 1
	if first_sent == nil then
		first_sent = wall()
	end
	return r
end

response = function(status, headers, body)
	if body == "ok\n" then
		return
	end
	answered = answered + 1
	if answered == #queue then
		local f = io.open(dir .. "/done." .. mode .. "." .. tostring(from) .. "." .. tostring(tid), "w")
		f:write(string.format("%.6f %.6f\n", first_sent, wall()))
		f:close()
		wrk.thread:stop()
	end
end

done = function(summary, latency, requests)
	io.write(string.format("errors %d\n", summary.errors.status + summary.errors.connect
		+ summary.errors.read + summary.errors.write + summary.errors.timeout))
	io.write(string.format("p50_ms %.3f\np99_ms %.3f\n",
		latency:percentile(50) / 1000, latency:percentile(99) / 1000))
	io.write(string.format("requests %d\n", summary.requests))
end
