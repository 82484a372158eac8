-- wrk script: update_engine-style Omaha traffic from BENCH_MACHINES distinct machines.
--
-- Machine i belongs to the policy-limited group when i % 10 == 0, else to the unthrottled group.
-- Each wrk thread owns the machines i ≡ thread (mod threads) and visits them round-robin, so a
-- machine never has two requests in flight. Its visit count drives a realistic update_engine
-- life cycle in the unthrottled group (which grants everyone):
--   visit 0     ping + updatecheck at the old version (granted)
--   visit 1     event 13/1 (download started)
--   visit 2     event 14/1 (download finished)
--   visit 3     after "reboot": ping + updatecheck at the new version + event 3/2 with the
--               previous version (completes the update)
--   visit 4...  ping + updatecheck at the new version + the every-check 3/2 (noupdate)
-- Machines of the limited group keep asking at the old version (50 per period get granted,
-- the rest are denied and put on hold); they send no download events.
package.path = package.path .. ";" .. (os.getenv("BENCH_DIR") or "bench") .. "/?.lua"
require("common")

local machines = tonumber(os.getenv("BENCH_MACHINES") or "10000")
local prefix = os.getenv("BENCH_MACHINE_PREFIX") or "m"
local appid = os.getenv("BENCH_APP_ID") or "missing-app-id"
local open_track = os.getenv("BENCH_OPEN_TRACK") or "open"
local limited_track = os.getenv("BENCH_LIMITED_TRACK") or "limited"
local old_version = os.getenv("BENCH_OLD_VERSION") or "1.0.0"
local new_version = os.getenv("BENCH_NEW_VERSION") or "2.0.0"
-- Visits each machine already made (in an earlier wrk run, e.g. the warm-up): its life cycle
-- continues from there instead of starting over.
local visit_offset = tonumber(os.getenv("BENCH_VISIT_OFFSET") or "0")

local threads = {}
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  table.insert(threads, thread)
  counter = counter + 1
end

local head = '<?xml version="1.0" encoding="UTF-8"?>\n' ..
  '<request protocol="3.0" version="update_engine-0.4.10" updaterversion="update_engine-0.4.10" installsource="scheduler" ismachine="1">\n' ..
  '    <os version="Chateau" platform="CoreOS" sp="%s_x86_64"></os>\n' ..
  '    <app appid="%s" version="%s" track="%s" bootid="{4c9d2f6e-8b1a-4e37-a5d0-3f7c1b9e2a68}" oem="qemu" oemversion="0.0.2" alephversion="%s" machineid="%s" machinealias="" lang="en-US" board="amd64-usr" hardware_class="" delta_okay="false" >\n'
local tail = '    </app>\n</request>\n'
local check = '        <ping active="1"></ping>\n        <updatecheck></updatecheck>\n'

local visits = {}
local next_index
local nthreads

function init(args)
  nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
  next_index = tid
  wrk.method = "POST"
  wrk.path = "/v1/update/"
  wrk.headers["Content-Type"] = "text/xml"
end

function request()
  local i = next_index
  next_index = next_index + nthreads
  if next_index >= machines then next_index = tid end
  local v = visits[i] or visit_offset
  visits[i] = v + 1
  local id = string.format("%s%031d", prefix, i)
  local body
  if i % 10 == 0 then
    body = string.format(head, old_version, appid, old_version, limited_track, old_version, id) ..
      check .. '        <event eventtype="3" eventresult="2" previousversion=""></event>\n' .. tail
  elseif v == 0 then
    body = string.format(head, old_version, appid, old_version, open_track, old_version, id) .. check ..
      '        <event eventtype="3" eventresult="2" previousversion=""></event>\n' .. tail
  elseif v == 1 then
    body = string.format(head, old_version, appid, old_version, open_track, old_version, id) ..
      '        <event eventtype="13" eventresult="1"></event>\n' .. tail
  elseif v == 2 then
    body = string.format(head, old_version, appid, old_version, open_track, old_version, id) ..
      '        <event eventtype="14" eventresult="1"></event>\n' .. tail
  elseif v == 3 then
    body = string.format(head, new_version, appid, new_version, open_track, old_version, id) .. check ..
      string.format('        <event eventtype="3" eventresult="2" previousversion="%s"></event>\n', old_version) .. tail
  else
    body = string.format(head, new_version, appid, new_version, open_track, old_version, id) .. check ..
      '        <event eventtype="3" eventresult="2" previousversion=""></event>\n' .. tail
  end
  return wrk.format(nil, nil, nil, body)
end

done = bench_done
