-- Consumers of the publish -> pull -> ack flow: each connection pulls up to
-- BENCH_PULL_LIMIT messages from topic BENCH_TOPIC, and the ids a pull returns are
-- acknowledged with one batch ack (POST /topics/{topic}/messages:ack) sent as the
-- thread's next request. `acked` counts the ids the service confirmed.

package.path = "bench/wrk/?.lua;" .. package.path
local common = require("common")

counters = { "pulled", "acked", "not_found", "empty_pulls" }
pulled = 0
acked = 0
not_found = 0
empty_pulls = 0

local pull_request
local ack_path
local json_headers
local pending_acks = {}

function init(args)
   local topic = common.require_env("BENCH_TOPIC")
   local limit = os.getenv("BENCH_PULL_LIMIT") or "100"
   local wait_ms = os.getenv("BENCH_WAIT_MS") or "100"
   pull_request = wrk.format(
      "GET", "/topics/" .. topic .. "/messages?limit=" .. limit .. "&wait_ms=" .. wait_ms)
   ack_path = "/topics/" .. topic .. "/messages:ack"
   json_headers = common.body_headers("application/json")
end

function request()
   local body = table.remove(pending_acks)
   if body ~= nil then
      return wrk.format("POST", ack_path, json_headers, body)
   end
   return pull_request
end

local function count_strings(list)
   local count = 0
   for _ in list:gmatch('"[^"]*"') do
      count = count + 1
   end
   return count
end

function response(status, headers, body)
   if status ~= 200 then
      return
   end
   if body:sub(1, 12) == '{"messages":' then
      local ids = {}
      for id in body:gmatch('"message_id":"([^"]+)"') do
         table.insert(ids, '"' .. id .. '"')
      end
      if #ids == 0 then
         empty_pulls = empty_pulls + 1
         return
      end
      pulled = pulled + #ids
      table.insert(pending_acks, '{"message_ids":[' .. table.concat(ids, ",") .. ']}')
   else
      local acked_list = body:match('"acked":%[(.-)%]')
      local missing_list = body:match('"not_found":%[(.-)%]')
      if acked_list ~= nil then
         acked = acked + count_strings(acked_list)
      end
      if missing_list ~= nil then
         not_found = not_found + count_strings(missing_list)
      end
   end
end
