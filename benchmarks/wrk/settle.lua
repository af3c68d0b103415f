-- Replay pre-signed settle requests against the gateway, each exactly once.
--
--   wrk -t1 -c16 -d15s --latency -s benchmarks/wrk/settle.lua http://127.0.0.1:PORT/v1/settlements -- PREFIX
--
-- LuaJIT has no HMAC, so benchmarks/ceilings.py signs the requests in Python just before
-- the run (a signature is good for 300 s) and writes one file per wrk thread,
-- PREFIX.0, PREFIX.1, ...: thread i reads only PREFIX.i, so no two threads, and no two
-- connections of one thread, ever send the same request. Each record is an 8-digit
-- length, a newline, and that many bytes of a complete HTTP/1.1 request (headers
-- X-Key-Id, X-Timestamp, X-Nonce, X-Signature, and the JSON body). Records are read
-- lazily, so memory stays flat however long the run.
--
-- When a thread runs out of requests it sends GET /healthz instead and stops; those
-- answers are counted apart ("after_exhaustion"), never as settlements or errors.
--
-- wrk counts only socket errors and statuses >= 400; a settle answered with anything but
-- 201 (a replay's 200 included) is a failure here, so response() counts every status,
-- and the count of 201s per second of the monotonic clock, from which ceilings.py takes
-- the steady-state throughput. done() prints one line, "CEILINGS_JSON {...}".

local ffi = require("ffi")
ffi.cdef([[
typedef struct { long tv_sec; long tv_nsec; } ceilings_timespec;
int clock_gettime(int clock_id, ceilings_timespec *tp);
]])
local CLOCK_MONOTONIC = 1
local timespec = ffi.new("ceilings_timespec")

local function now_seconds()
  ffi.C.clock_gettime(CLOCK_MONOTONIC, timespec)
  return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) / 1e9
end

-- Main Lua state: number the threads and keep them for done().
local threads = {}
local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
  table.insert(threads, thread)
end

-- Per-thread Lua state. Globals, so done() can read them with thread:get().
thread_index = 0
sent = 0
created = 0
statuses = {}
per_second = {}
after_exhaustion = 0
exhausted = false
first_sent = 0
last_created = 0

local file
local healthz

function init(args)
  local prefix = args[1]
  if prefix == nil then
    error("usage: wrk ... -s settle.lua URL -- PREFIX")
  end
  file = assert(io.open(prefix .. "." .. thread_index, "rb"))
  healthz = "GET /healthz HTTP/1.1\r\nHost: " .. wrk.host .. ":" .. tostring(wrk.port) .. "\r\n\r\n"
end

function request()
  if not exhausted then
    local header = file:read(9)
    if header ~= nil then
      local length = tonumber(string.sub(header, 1, 8))
      local raw = file:read(length)
      if raw ~= nil and #raw == length then
        if sent == 0 then
          first_sent = now_seconds()
        end
        sent = sent + 1
        return raw
      end
    end
    exhausted = true
    file:close()
  end
  return healthz
end

function response(status, headers, body)
  if status == 201 then
    created = created + 1
    local now = now_seconds()
    last_created = now
    local second = math.floor(now)
    per_second[second] = (per_second[second] or 0) + 1
    return
  end
  if exhausted and status == 200 and not string.find(body, '"replayed"', 1, true) then
    after_exhaustion = after_exhaustion + 1
    wrk.thread:stop()
    return
  end
  statuses[status] = (statuses[status] or 0) + 1
end

local function json_counts(map)
  local parts = {}
  for key, count in pairs(map) do
    table.insert(parts, string.format('"%s":%d', tostring(key), count))
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

function done(summary, latency, requests)
  local total_sent, total_created, total_after = 0, 0, 0
  local exhausted_threads = 0
  local first, last = nil, 0
  local merged_statuses, merged_seconds = {}, {}
  for _, thread in ipairs(threads) do
    total_sent = total_sent + thread:get("sent")
    total_created = total_created + thread:get("created")
    total_after = total_after + thread:get("after_exhaustion")
    if thread:get("exhausted") then
      exhausted_threads = exhausted_threads + 1
    end
    local started = thread:get("first_sent")
    if started > 0 and (first == nil or started < first) then
      first = started
    end
    last = math.max(last, thread:get("last_created"))
    for status, count in pairs(thread:get("statuses")) do
      merged_statuses[status] = (merged_statuses[status] or 0) + count
    end
    for second, count in pairs(thread:get("per_second")) do
      merged_seconds[second] = (merged_seconds[second] or 0) + count
    end
  end
  local seconds = {}
  for second, count in pairs(merged_seconds) do
    table.insert(seconds, string.format("[%d,%d]", second, count))
  end
  table.sort(seconds)
  local errors = summary.errors
  io.write(string.format(
    'CEILINGS_JSON {"requests":%d,"duration_us":%d,"sent":%d,"created":%d,"after_exhaustion":%d,' ..
    '"exhausted_threads":%d,"threads":%d,"first_sent":%.6f,"last_created":%.6f,"non_201":%s,' ..
    '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"wrk_status_errors":%d,' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f},"per_second":[%s]}\n',
    summary.requests, summary.duration, total_sent, total_created, total_after,
    exhausted_threads, #threads, first or 0, last, json_counts(merged_statuses),
    errors.connect, errors.read, errors.write, errors.timeout, errors.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean, table.concat(seconds, ",")))
end
