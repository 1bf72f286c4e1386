-- wrk script for bench/webhook.py: POST the pre-signed Stripe events of a file, in order,
-- one per request, each once (unless the run outlasts the file: then it starts over and
-- counts a wrap). The file has one "Stripe-Signature<TAB>JSON body" line per event.
--
--   wrk -t1 -c64 -d10s -s bench/webhook.lua URL -- FILE
--
-- One wrk thread: the events go out in file order, and one thread sends far more requests
-- per second than a Python server answers. done() prints the figures as one JSON line.

local prepared = {}
issued, wraps = 0, 0  -- globals, so done() can read them with thread:get()

function init(args)
  for line in io.lines(args[1]) do
    local signature, body = line:match("^([^\t]+)\t(.+)$")
    prepared[#prepared + 1] = wrk.format("POST", nil, {
      ["Content-Type"] = "application/json",
      ["Stripe-Signature"] = signature,
    }, body)
  end
end

function request()
  issued = issued + 1
  local i = (issued - 1) % #prepared + 1
  if i == 1 and issued > 1 then wraps = wraps + 1 end
  return prepared[i]
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function done(summary, latency, _)
  local sent, wrapped = 0, 0
  for _, thread in ipairs(threads) do
    sent = sent + thread:get("issued")
    wrapped = wrapped + thread:get("wraps")
  end
  local e = summary.errors
  io.write(string.format(
    '{"answered": %d, "duration_s": %.3f, "status_4xx_5xx": %d, "socket_errors": %d, '
      .. '"timeouts": %d, "issued": %d, "wraps": %d, "p50_ms": %.2f, "p99_ms": %.2f, '
      .. '"max_ms": %.2f}\n',
    summary.requests, summary.duration / 1e6, e.status, e.connect + e.read + e.write,
    e.timeout, sent, wrapped, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000
  ))
end
