-- POST /v1/charges of 1.5 credits to one of acct_0 … acct_9999, a fresh Idempotency-Key each.
dofile(os.getenv("BENCH_DIR") .. "/common.lua")
local key = os.getenv("KEY")
local run = tostring(os.time())
local n = 0

function init(args)
  math.randomseed(os.time() * 1000 + id)
end

function request()
  n = n + 1
  local body = '{"account_id":"acct_' .. math.random(0, 9999) .. '","amount":1.5,"description":"bench"}'
  return wrk.format("POST", "/v1/charges", {
    ["Authorization"] = "Bearer " .. key,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "wrk-" .. run .. "-" .. id .. "-" .. n,
  }, body)
end
