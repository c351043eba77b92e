-- One fixed request repeated: the URL's path, BENCH_METHOD (GET by default) and, for a
-- body, the file BENCH_BODY sent as BENCH_CONTENT_TYPE (application/json by default).
-- wrk builds the request once, so the load generator spends the least possible per call.

package.path = "bench/wrk/?.lua;" .. package.path
local common = require("common")

wrk.method = os.getenv("BENCH_METHOD") or "GET"
local body_file = os.getenv("BENCH_BODY")
if body_file ~= nil and body_file ~= "" then
   wrk.body = common.read_file(body_file)
   wrk.headers["Content-Type"] = os.getenv("BENCH_CONTENT_TYPE") or "application/json"
end
