// npm run generate: start creditsd and write src/schema.ts from its /openapi.json.
import { writeFileSync } from "node:fs";
import { startServer } from "../test/support/server.mjs";
import { generateSchema } from "./schema.mjs";

const server = await startServer();
try {
  writeFileSync(new URL("../src/schema.ts", import.meta.url), await generateSchema(server.url));
} finally {
  await server.stop();
}
