-- A POST whose body needs an id no other request used (a client-chosen content_id):
-- the file BENCH_BODY_TEMPLATE with `{id}` replaced by the run's nonce, the thread
-- number and a per-thread counter. With BENCH_TEXTS, `{text}` is replaced by the lines
-- of that file in turn (each line a JSON string literal, quotes included).

package.path = "bench/wrk/?.lua;" .. package.path
local common = require("common")

local template
local texts = nil
local prefix
local sequence = 0
local headers

function init(args)
   template = common.read_file(common.require_env("BENCH_BODY_TEMPLATE")):gsub("%s+$", "")
   local texts_file = os.getenv("BENCH_TEXTS")
   if texts_file ~= nil and texts_file ~= "" then
      texts = common.read_lines(texts_file)
   end
   prefix = common.id_prefix()
   headers = common.body_headers()
end

function request()
   sequence = sequence + 1
   local id = prefix .. "-" .. tostring(sequence)
   local body = template:gsub("{id}", id)
   if texts ~= nil then
      local text = texts[sequence % #texts + 1]
      -- A function replacement keeps `%` in the text literal.
      body = body:gsub("{text}", function() return text end)
   end
   return wrk.format("POST", nil, headers, body)
end
