-- wrk script for the ingress benchmark: signed GitHub deliveries, a unique X-GitHub-Delivery per request.
--
--   wrk -t1 -c32 -d10s -s bench/ingress.lua URL -- MANIFEST RUN_PREFIX MAX_REQUESTS
--
-- MANIFEST has one line per body, "event<TAB>sha256=signature<TAB>path", written by bench/ingress.py,
-- which signs each body once with HMAC-SHA256 (the signature covers the body only, so the per-request
-- delivery id does not change it). Bodies are sent in turn. Each thread stops after MAX_REQUESTS.
-- done() prints one line, "BENCH_JSON {...}", with the latency percentiles and the responses counted
-- by status on every thread.

local threads = {}

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

local heads = {}
local tails = {}
local nbodies = 0
local turn = 0
local prefix = ""
local max_requests = 0

function init(args)
  local manifest, run_prefix = args[1], args[2]
  max_requests = tonumber(args[3]) or 1000000
  -- RUN_PREFIX is the first 13 characters of a GUID ("xxxxxxxx-xxxx"), one per run, server and round:
  -- with the thread and the counter, each request's id is shaped like GitHub's.
  prefix = run_prefix .. string.format("-%04x-8000-", tid)
  local host = wrk.host .. ":" .. tostring(wrk.port)
  for line in io.lines(manifest) do
    local event, signature, path = line:match("^([^\t]+)\t([^\t]+)\t(.+)$")
    if event then
      local f = assert(io.open(path, "rb"))
      local body = f:read("*a")
      f:close()
      nbodies = nbodies + 1
      heads[nbodies] = "POST " .. wrk.path .. " HTTP/1.1\r\n"
        .. "Host: " .. host .. "\r\n"
        .. "User-Agent: GitHub-Hookshot/bench\r\n"
        .. "Accept: */*\r\n"
        .. "Content-Type: application/json\r\n"
        .. "Content-Length: " .. tostring(#body) .. "\r\n"
        .. "X-GitHub-Event: " .. event .. "\r\n"
        .. "X-GitHub-Hook-ID: 1\r\n"
        .. "X-Hub-Signature-256: " .. signature .. "\r\n"
        .. "X-GitHub-Delivery: "
      tails[nbodies] = "\r\n\r\n" .. body
    end
  end
  assert(nbodies > 0, "no deliveries in " .. manifest)
  sent = 0
  statuses = {}
end

function request()
  sent = sent + 1
  if sent > max_requests then
    sent = max_requests
    wrk.thread:stop()
  end
  turn = turn % nbodies + 1
  return heads[turn] .. prefix .. string.format("%012x", sent) .. tails[turn]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local total_sent = 0
  local merged = {}
  for _, thread in ipairs(threads) do
    total_sent = total_sent + (thread:get("sent") or 0)
    for status, count in pairs(thread:get("statuses") or {}) do
      merged[status] = (merged[status] or 0) + count
    end
  end
  local parts = {}
  for status, count in pairs(merged) do
    table.insert(parts, string.format('"%d":%d', status, count))
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"duration_us":%d,"requests":%d,"bytes":%d,"sent":%d,'
      .. '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},'
      .. '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"max":%d,"mean":%.1f},"statuses":{%s}}\n',
    summary.duration, summary.requests, summary.bytes, total_sent,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    table.concat(parts, ",")))
end
