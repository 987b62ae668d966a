-- GET /v1/accounts/acct_N for a random N below 10,000.
dofile(os.getenv("BENCH_DIR") .. "/common.lua")
local key = os.getenv("KEY")

function init(args)
  math.randomseed(os.time() * 1000 + id)
end

function request()
  return wrk.format("GET", "/v1/accounts/acct_" .. math.random(0, 9999), {
    ["Authorization"] = "Bearer " .. key,
  })
end
