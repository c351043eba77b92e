-- Requests that name existing resources: BENCH_PATH_TEMPLATE with `{id}` replaced by
-- each line of BENCH_IDS in turn, sent with BENCH_METHOD and the optional body file
-- BENCH_BODY. Threads start at different ids so they spread over the set.

package.path = "bench/wrk/?.lua;" .. package.path
local common = require("common")

local prepared = {}
local next_index = 1

function init(args)
   local template = common.require_env("BENCH_PATH_TEMPLATE")
   local method = os.getenv("BENCH_METHOD") or "GET"
   local body_file = os.getenv("BENCH_BODY")
   local body, headers = nil, nil
   if body_file ~= nil and body_file ~= "" then
      body = common.read_file(body_file)
      headers = common.body_headers()
   end
   for _, id in ipairs(common.read_lines(common.require_env("BENCH_IDS"))) do
      local path = template:gsub("{id}", id)
      table.insert(prepared, wrk.format(method, path, headers, body))
   end
   next_index = ((thread_number - 1) * 7919) % #prepared + 1
end

function request()
   local request = prepared[next_index]
   next_index = next_index % #prepared + 1
   return request
end
