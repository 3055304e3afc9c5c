-- wrk script for the Taskhub scenarios.
-- Usage: wrk ... -s bench/scenarios.lua URL -- <scenario> <users-file> [path]
-- users-file: one user a line, "token<TAB>email<TAB>password<TAB>id,id,...".
-- Each request takes the next user (round robin, per thread, from a random start), so load is
-- spread over many users and their tokens. Status codes are counted per thread and summed in done().

local threads = {}

function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end

local scenario = "list"
local users = {}
local counter = 0
local fixed_path = nil
codes = {}

local statuses = {"todo", "in_progress", "done"}
local priorities = {"low", "medium", "high"}
local words = {"report", "invoice", "deploy", "review", "meeting", "budget", "design", "backup"}

function init(args)
  scenario = args[1] or "list"
  fixed_path = args[3]
  for line in io.lines(args[2]) do
    local token, email, password, ids = line:match("^([^\t]*)\t([^\t]*)\t([^\t]*)\t(.*)$")
    if token then
      local list = {}
      for id in ids:gmatch("[^,]+") do list[#list + 1] = id end
      users[#users + 1] = {auth = "Bearer " .. token, email = email, password = password, ids = list}
    end
  end
  math.randomseed(os.time() * 1000 + (tid or 0) * 7919)
  counter = math.random(#users)
end

local function pick_id(u)
  return u.ids[math.random(#u.ids)]
end

local function build(kind, u)
  local h = {["Authorization"] = u.auth}
  if kind == "list" then
    return wrk.format("GET", "/api/v1/tasks", h)
  elseif kind == "list-filtered" then
    return wrk.format("GET", "/api/v1/tasks?status=todo&status=in_progress&priority=high&q="
      .. words[math.random(#words)], h)
  elseif kind == "get" then
    return wrk.format("GET", "/api/v1/tasks/" .. pick_id(u), h)
  elseif kind == "create" then
    h["Content-Type"] = "application/json"
    return wrk.format("POST", "/api/v1/tasks", h, string.format(
      '{"title":"bench task %d","description":"created by wrk","priority":"%s","tags":["bench","%s"]}',
      counter, priorities[math.random(3)], words[math.random(#words)]))
  elseif kind == "update" then
    h["Content-Type"] = "application/json"
    return wrk.format("PATCH", "/api/v1/tasks/" .. pick_id(u), h, string.format(
      '{"title":"bench update %d","status":"%s"}', counter, statuses[math.random(3)]))
  elseif kind == "login" then
    return wrk.format("POST", "/api/v1/auth/login", {["Content-Type"] = "application/json"},
      string.format('{"email":"%s","password":"%s"}', u.email, u.password))
  elseif kind == "path" then
    return wrk.format("GET", fixed_path, h)
  end
  error("unknown scenario " .. kind)
end

function request()
  counter = counter + 1
  local u = users[(counter % #users) + 1]
  local kind = scenario
  if kind == "mixed" then
    -- 80% reads (50 list, 30 get), 20% writes (10 create, 10 update)
    local r = math.random(100)
    if r <= 50 then kind = "list" elseif r <= 80 then kind = "get"
    elseif r <= 90 then kind = "create" else kind = "update" end
  end
  return build(kind, u)
end

function response(status, headers, body)
  codes[status] = (codes[status] or 0) + 1
end

function done(summary, latency, requests)
  local total = {}
  for _, t in ipairs(threads) do
    local c = t:get("codes")
    if c then
      for k, v in pairs(c) do total[k] = (total[k] or 0) + v end
    end
  end
  local parts = {}
  for k, v in pairs(total) do parts[#parts + 1] = string.format('"%d":%d', k, v) end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,' ..
    '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
    '"latency_us":{"p50":%d,"p90":%d,"p95":%d,"p99":%d,"max":%d,"mean":%.1f},"codes":{%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
    latency.max, latency.mean, table.concat(parts, ",")))
end
