-- wrk script: POST a training submission with a unique name per request.
-- Each wrk thread gets an id in setup(); names are t<thread>-<counter>.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  token = os.getenv("TOKEN") or "runplane-dev-admin-token"
  project = os.getenv("PROJECT") or "bench"
  run = os.getenv("RUN") or "r"
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"name":"%s%d-%d","project":"%s","spec":{"image":"pytorch/pytorch:2.4","compute":{"gpuDevicesRequest":1,"cpuCoreRequest":2,"cpuMemoryRequest":"8Gi"},"environmentVariables":[{"name":"EPOCHS","value":"10"}]}}',
    run, tid, counter, project)
  return wrk.format("POST", "/api/v1/workloads/trainings", {
    ["Content-Type"] = "application/json",
    ["Authorization"] = "Bearer " .. token,
  }, body)
end

function done(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format("requests %d, errors %d, rate %.1f/s, p50 %.2f ms, p99 %.2f ms\n",
    summary.requests, errors, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
