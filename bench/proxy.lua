-- wrk script of bench_proxy.py: POST one chat completion to every target alike.
--
--   wrk -t1 -c1 -d10s --latency -s bench/proxy.lua -H "Authorization: Bearer …" \
--       -H "X-Creditsd-Account: bench" http://127.0.0.1:8000/openai/v1/chat/completions -- plain
--
-- The first argument "stream" asks for a streamed completion; anything else a plain one.
-- A second argument N > 1 names a random one of the accounts bench-0 … bench-(N-1) in
-- X-Creditsd-Account on each request; otherwise the request is built once per thread.
-- Refusals are counted by refusals.lua, for the bench to parse.

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "refusals.lua")

function setup(thread)
   table.insert(threads, thread)
end

local request_text = nil
local body = nil
local accounts = 1

function init(args)
   local stream = ""
   if args[1] == "stream" then
      stream = ', "stream": true, "stream_options": {"include_usage": true}'
   end
   accounts = tonumber(args[2] or "1")
   math.randomseed(os.time() * 1000 + #threads)
   wrk.headers["Content-Type"] = "application/json"
   body = '{"model": "openai/gpt-4o-mini", "messages": [{"role": "user", "content": "Hi"}],'
      .. ' "max_tokens": 100' .. stream .. '}'
   request_text = wrk.format("POST", nil, nil, body)
end

function request()
   if accounts > 1 then
      wrk.headers["X-Creditsd-Account"] = "bench-" .. math.random(0, accounts - 1)
      return wrk.format("POST", nil, nil, body)
   end
   return request_text
end
