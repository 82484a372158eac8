-- wrk script for plain GETs (noop health check, REST group page): only the result line.
package.path = package.path .. ";" .. (os.getenv("BENCH_DIR") or "bench") .. "/?.lua"
require("common")
done = bench_done
