-- What every wrk script of the benches shares: each thread counts the answers that were not
-- 2xx and keeps the first one's status and body; done() prints "non-2xx: N" (and "first
-- error: …" when there were any) for the bench to parse. A script loads it first with
--   dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "refusals.lua")
-- and adds each thread to `threads` in its setup().

threads = {}
errors = 0
first_error = nil

function response(status, _headers, body)
   if status < 200 or status > 299 then
      errors = errors + 1
      if first_error == nil then
         first_error = status .. " " .. body
      end
   end
end

function done(summary, latency, requests)
   local total, first = 0, nil
   for _, thread in ipairs(threads) do
      total = total + thread:get("errors")
      first = first or thread:get("first_error")
   end
   io.write(string.format("non-2xx: %d\n", total))
   if first ~= nil then
      io.write("first error: " .. first .. "\n")
   end
end
