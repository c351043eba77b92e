-- Repeats the URL's GET (a messaging pull) and counts the messages the responses carry,
-- so a pull that finds fewer messages than its limit is visible in the result.

package.path = "bench/wrk/?.lua;" .. package.path
require("common")

counters = { "delivered", "empty" }
delivered = 0
empty = 0

function response(status, headers, body)
   if status ~= 200 then
      return
   end
   local found = 0
   for _ in body:gmatch('"ack_id":"') do
      found = found + 1
   end
   delivered = delivered + found
   if found == 0 then
      empty = empty + 1
   end
end
