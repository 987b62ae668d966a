// src/schema.ts is what openapi-typescript makes of the running server's /openapi.json.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, before, test } from "node:test";
import { generateSchema } from "../scripts/schema.mjs";
import { startServer } from "./support/server.mjs";

let server;
before(async () => {
  server = await startServer();
});
after(() => server?.stop());

test("the checked-in types match the server's OpenAPI document", async () => {
  const checkedIn = readFileSync(new URL("../src/schema.ts", import.meta.url), "utf8");
  const current = await generateSchema(server.url);
  assert.ok(
    checkedIn === current,
    "src/schema.ts is out of date with creditsd's /openapi.json: run `npm run generate` in clients/typescript",
  );
});
