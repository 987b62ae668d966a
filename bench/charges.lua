-- wrk script of bench_charges.py: POST /v1/charges, one credit, a fresh Idempotency-Key each.
--
--   wrk -t1 -c32 -d5s --latency -s bench/charges.lua -H "Authorization: Bearer …" \
--       http://127.0.0.1:8000 -- spread run7
--
-- The first argument picks the account: "hot" charges the account "hot", anything else a
-- random one of acct-00000 … acct-09999. The second prefixes the keys, so runs never replay
-- each other. Refusals are counted by refusals.lua, for the bench to parse.

dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "refusals.lua")

function setup(thread)
   thread:set("number", #threads + 1)
   table.insert(threads, thread)
end

local hot = false
local prefix = "wrk"
local sent = 0
local headers = {}

function init(args)
   hot = args[1] == "hot"
   prefix = (args[2] or "wrk") .. "-" .. number
   math.randomseed(os.time() * 1000 + number)
   -- Headers passed to wrk.format replace the -H ones (the API key): keep those.
   for name, value in pairs(wrk.headers) do
      headers[name] = value
   end
   headers["Content-Type"] = "application/json"
end

function request()
   sent = sent + 1
   local account = "hot"
   if not hot then
      account = string.format("acct-%05d", math.random(0, 9999))
   end
   headers["Idempotency-Key"] = prefix .. "-" .. sent
   local body = '{"account_id": "' .. account .. '", "amount": 1}'
   return wrk.format("POST", "/v1/charges", headers, body)
end
