-- wrk script: webhook deliveries read from BENCH_WEBHOOK_FILE, one request per line:
--   <path>\t<signature header or ->\t<json body>
-- Lines are pre-generated (bench/run.sh) so that each delivery names a new version (each one
-- creates a package) and generic webhooks carry a valid X-Hub-Signature-256.
package.path = package.path .. ";" .. (os.getenv("BENCH_DIR") or "bench") .. "/?.lua"
require("common")

local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end

local lines = {}
local pos
local nthreads
function init(args)
  nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
  for line in io.lines(os.getenv("BENCH_WEBHOOK_FILE")) do
    table.insert(lines, line)
  end
  pos = tid + 1
end

function request()
  local line = lines[pos]
  pos = pos + nthreads
  if pos > #lines then pos = tid + 1 end
  local path, sig, body = line:match("^([^\t]*)\t([^\t]*)\t(.*)$")
  local headers = { ["Content-Type"] = "application/json" }
  if sig ~= "-" then headers["X-Hub-Signature-256"] = sig end
  return wrk.format("POST", path, headers, body)
end

done = bench_done
