-- Print wrk's summary as one machine-readable line, "CEILINGS_JSON {...}", for benchmarks/ceilings.py.
--
--   wrk -t1 -c64 -d15s --latency -s benchmarks/wrk/report.lua http://127.0.0.1:PORT/
--
-- Only done() is defined: a response() hook would make wrk parse every answer and lower the
-- very ceiling being measured. Statuses >= 400 still show up in wrk's own error count.

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'CEILINGS_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"socket_errors":{"connect":%d,"read":%d,"write":%d,"timeout":%d},"wrk_status_errors":%d,' ..
    '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\n',
    summary.requests, summary.duration, summary.bytes,
    errors.connect, errors.read, errors.write, errors.timeout, errors.status,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9),
    latency.max, latency.mean))
end
