-- wrk script: POST a CSR to OpenBao's pki/sign/<role>, a fresh common name each time.
local csr = os.getenv("BENCH_CSR_JSON") -- the CSR as a JSON string literal
local token = os.getenv("BAO_TOKEN") or "root"
local n = 0
request = function()
  n = n + 1
  local body = '{"csr":' .. csr .. ',"common_name":"bench-' .. n .. '.example.com","ttl":"1h"}'
  return wrk.format("POST", nil, { ["X-Vault-Token"] = token, ["Content-Type"] = "application/json" }, body)
end
response = function(status, headers, body)
  if status ~= 200 then
    io.stderr:write("status " .. status .. ": " .. body .. "\n")
  end
end
