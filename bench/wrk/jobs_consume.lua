-- The consumer of the moderation flow: polls GET /jobs/next, waiting up to BENCH_WAIT_MS
-- (0 by default) for a decision, and counts decisions (200), flagged decisions among
-- them, and polls that found none (204).

package.path = "bench/wrk/?.lua;" .. package.path
require("common")

local wait_ms = os.getenv("BENCH_WAIT_MS") or "0"
wrk.path = "/jobs/next?wait_ms=" .. wait_ms

counters = { "decisions", "flagged", "empty_polls" }
decisions = 0
flagged = 0
empty_polls = 0

function response(status, headers, body)
   if status == 200 then
      decisions = decisions + 1
      if body:find('"decision":"flagged"', 1, true) then
         flagged = flagged + 1
      end
   elseif status == 204 then
      empty_polls = empty_polls + 1
   end
end
