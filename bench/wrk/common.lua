-- Shared by every benchmark script: thread numbering, reading the files the harness
-- generates, and the machine-readable summary the harness parses.
--
-- wrk runs each script in one Lua state per thread plus one for setup() and done().
-- A script lists the per-thread counters it keeps in `counters`; done() sums them.

local common = {}

local threads = {}

-- Names each thread (1, 2, ...) so scripts can build ids that no other thread uses.
function setup(thread)
   table.insert(threads, thread)
   thread:set("thread_number", #threads)
end

-- Returns the value of environment variable `name`, or stops the run when it is missing.
function common.require_env(name)
   local value = os.getenv(name)
   if value == nil or value == "" then
      error("environment variable " .. name .. " is missing; run the benchmark through bench/run.sh")
   end
   return value
end

-- Returns the whole content of the file at `path`.
function common.read_file(path)
   local file = assert(io.open(path, "rb"))
   local content = file:read("*a")
   file:close()
   return content
end

-- Returns the non-empty lines of the file at `path`.
function common.read_lines(path)
   local lines = {}
   for line in io.lines(path) do
      if line ~= "" then
         table.insert(lines, line)
      end
   end
   assert(#lines > 0, "no lines in " .. path)
   return lines
end

-- Returns the request headers for a body of `content_type` (BENCH_CONTENT_TYPE by default).
function common.body_headers(content_type)
   return { ["Content-Type"] = content_type or os.getenv("BENCH_CONTENT_TYPE") or "application/json" }
end

-- Returns a prefix no other thread or run uses: the run's nonce and the thread number.
function common.id_prefix()
   return common.require_env("BENCH_NONCE") .. "-" .. tostring(thread_number)
end

-- Prints one line the harness parses: `BENCH_RESULT {json}`.
function done(summary, latency, requests)
   local totals = {}
   for _, name in ipairs(counters or {}) do
      local total = 0
      for _, thread in ipairs(threads) do
         total = total + (tonumber(thread:get(name)) or 0)
      end
      table.insert(totals, string.format('"%s":%d', name, total))
   end
   local errors = summary.errors
   io.write(string.format(
      'BENCH_RESULT {"duration_us":%d,"requests":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},' ..
      '"counters":{%s}}\n',
      summary.duration, summary.requests, summary.bytes,
      errors.connect, errors.read, errors.write, errors.status, errors.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99),
      latency.max, latency.mean,
      table.concat(totals, ",")))
end

return common
