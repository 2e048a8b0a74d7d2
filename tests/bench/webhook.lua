-- webhook.lua: wrk script of the webhook-ingest bench (tests/bench/webhook.sh).
--
--   wrk -t T -c C -d D -s webhook.lua URL -- BODIES PATH
--
-- Thread n (0-based) POSTs the lines of the file BODIES.n in order, one
-- JSON body per request, to PATH.  The file is read whole at init (one
-- string, cut at each request: init stays short, since wrk starts each
-- thread as soon as it is set up, before the next one reads its file).
-- Past the last line it starts again from the first: those requests
-- repeat a token, and the tracker answers them "duplicate".
local nthreads = 0
local data, pos, len, path
local hdrs = { ["Content-Type"] = "application/json" }

function setup(thread)
	thread:set("tid", nthreads)
	nthreads = nthreads + 1
end

function init(args)
	local f = assert(io.open(args[1] .. "." .. tid, "rb"))
	data = f:read("*a")
	f:close()
	len = #data
	pos = 1
	path = args[2]
	wraps = 0
end

function request()
	if pos > len then
		pos = 1
		wraps = wraps + 1
	end
	local e = string.find(data, "\n", pos, true)
	local body = string.sub(data, pos, e - 1)
	pos = e + 1
	return wrk.format("POST", path, hdrs, body)
end
