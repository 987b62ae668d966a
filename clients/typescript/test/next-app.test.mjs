// A real Next.js app (test/next-app: App Router, Turbopack, Cache Components on) with the
// package installed as the README says (`npm pack`, then `npm install` of the tarball), built
// by `next build` without creditsd's address, then served by `next start` against a real
// creditsd and called over HTTP with the headers a browser sends.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { after, before, test } from "node:test";
import { CreditsClient } from "../dist/index.js";
import { startServer } from "./support/server.mjs";

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const SITE = "https://shop.example";

let directory;
let app;
let creditsd;
const servers = [];

before(
  async () => {
    directory = mkdtempSync(join(tmpdir(), "creditsd-next-"));
    app = join(directory, "app");
    cpSync(join(here, "next-app"), app, {
      recursive: true,
      filter: (path) => !/[/\\](node_modules|\.next)$/.test(path),
    });
    // The dist/ that `npm test` has just built (its tsc step), so nothing rewrites it while
    // the other suites import it.
    const { stdout } = await run(
      "npm",
      ["pack", "--ignore-scripts", "--json", "--pack-destination", directory],
      { cwd: join(here, "..") },
    );
    const tarball = join(directory, JSON.parse(stdout)[0].filename);
    // --prefix, since `npm test --prefix clients/typescript` hands its own to npm run within.
    const quiet = [
      "--prefix",
      app,
      "--no-audit",
      "--no-fund",
      "--ignore-scripts",
      "--loglevel=error",
    ];
    await run("npm", ["ci", ...quiet], { cwd: app });
    await run("npm", ["install", ...quiet, tarball], { cwd: app });

    const started = Date.now();
    const build = await run(process.execPath, [nextBin(), "build"], {
      cwd: app,
      env: nextEnv({ CREDITSD_URL: undefined, CREDITSD_KEY: undefined, SITE_URL: undefined }),
      maxBuffer: 16 * 1024 * 1024,
    }).catch((error) => assert.fail(`next build failed:\n${error.stdout}\n${error.stderr}`));
    assert.match(build.stdout, /Turbopack/);
    assert.match(build.stdout, /Cache Components enabled/);
    console.log(`# next build: ${((Date.now() - started) / 1000).toFixed(1)} s`);

    creditsd = await startServer();
    const [adminKey, appKey] = await Promise.all([
      creditsd.createKey("admin", "admin"),
      creditsd.createKey("app", "web"),
    ]);
    await new CreditsClient({ baseUrl: creditsd.url, apiKey: adminKey }).initializeUser(
      "user_next",
      100,
    );
    servers.push(
      await startNext({ CREDITSD_URL: creditsd.url, CREDITSD_KEY: appKey, SITE_URL: SITE }),
    );
  },
  { timeout: 600_000 },
);

after(async () => {
  await Promise.all(servers.map((server) => server.stop()));
  await creditsd?.stop();
  if (directory) rmSync(directory, { recursive: true, force: true });
});

function nextBin() {
  return join(app, "node_modules/next/dist/bin/next");
}

/** This process's environment with `changes` (undefined: left out), and no telemetry. */
function nextEnv(changes = {}) {
  const env = { ...process.env, NEXT_TELEMETRY_DISABLED: "1", ...changes };
  for (const [name, value] of Object.entries(env)) if (value === undefined) delete env[name];
  return env;
}

/** `next start` on a free port with `env`; resolves once it is ready. */
async function startNext(env) {
  const child = spawn(process.execPath, [nextBin(), "start", "-H", "127.0.0.1", "-p", "0"], {
    cwd: app,
    env: nextEnv(env),
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  const port = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`next start hung:\n${output}`)), 60_000);
    const read = (chunk) => {
      output += chunk;
      const found = /Local:\s+http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
      if (found && /Ready in/.test(output)) {
        clearTimeout(timer);
        resolve(Number(found[1]));
      }
    };
    child.stdout.on("data", read);
    child.stderr.on("data", read);
    child.once("exit", (code) => reject(new Error(`next start exited with ${code}:\n${output}`)));
  });
  child.removeAllListeners("exit");
  return {
    port,
    output: () => output,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((done) => child.once("exit", done));
        child.kill("SIGTERM");
        await exited;
      }
    },
  };
}

/**
 * A request to the app as a browser makes it: to 127.0.0.1 with `headers` (Host, Origin,
 * Sec-Fetch-Site…, which fetch would not let a test set), the user's session cookie, and
 * `body` as JSON.
 */
function call(method, path, { headers = {}, body, server = servers[0] } = {}) {
  const data = body === undefined ? undefined : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const outgoing = httpRequest(
      {
        host: "127.0.0.1",
        port: server.port,
        method,
        path,
        headers: {
          Cookie: "user=user_next",
          ...(data === undefined ? {} : { "Content-Type": "application/json" }),
          ...headers,
        },
      },
      (response) => {
        const chunks = [];
        response.on("data", (chunk) => chunks.push(chunk));
        response.on("end", () => {
          const text = Buffer.concat(chunks).toString();
          resolve({ status: response.statusCode, text, json: () => JSON.parse(text) });
        });
      },
    );
    outgoing.on("error", reject);
    outgoing.end(data);
  });
}

const quote = (headers) =>
  call("POST", "/api/credits/quote", {
    headers,
    body: { feature: "video_generation", quantity: 3 },
  });

test("a same-origin POST is answered, however the app is reached", async () => {
  const port = servers[0].port;
  const sameOrigin = { "Sec-Fetch-Site": "same-origin" };
  for (const [how, headers] of [
    ["at its own address", { Origin: `http://127.0.0.1:${port}` }],
    ["by a name", { Host: `app.example:${port}`, Origin: `http://app.example:${port}` }],
    [
      "through a TLS proxy",
      {
        "X-Forwarded-Host": "app.example",
        "X-Forwarded-Proto": "https",
        Origin: "https://app.example",
      },
    ],
    ["at siteUrl, behind a proxy that says nothing", { Origin: SITE }],
  ]) {
    const response = await quote({ ...sameOrigin, ...headers });
    assert.equal(response.status, 200, `${how}: ${response.text}`);
    assert.deepEqual(response.json(), { amount: 30, amount_exact: "30", catalog_version: 1 });
  }
});

test("a POST another site's page makes is refused", async () => {
  const port = servers[0].port;
  for (const [how, headers] of [
    ["from another origin", { Origin: "https://evil.example", "Sec-Fetch-Site": "cross-site" }],
    ["from an opaque origin", { Origin: "null", "Sec-Fetch-Site": "cross-site" }],
    ["from a sibling subdomain", { Origin: "https://evil.shop.example" }],
    ["from this host's page over another scheme", { Origin: `https://127.0.0.1:${port}` }],
    ["with no Origin, cross-site", { "Sec-Fetch-Site": "cross-site" }],
    ["with no Origin, same-site", { "Sec-Fetch-Site": "same-site" }],
  ]) {
    const response = await quote(headers);
    assert.equal(response.status, 403, `${how}: ${response.text}`);
    assert.deepEqual(response.json(), {
      error: { code: "forbidden", message: "cross-site request refused" },
    });
  }
});

test("the balance, from an App Router route and from one in the edge runtime", async () => {
  const balance = await call("GET", "/api/credits/balance");
  assert.equal(balance.status, 200, balance.text);
  assert.deepEqual(balance.json(), { balance: 100, balance_exact: "100" });

  const edge = await call("GET", "/api/edge/balance");
  assert.equal(edge.status, 200, edge.text);
  assert.deepEqual(edge.json(), { balance: 100, runtime: "edge" });
  assert.equal(
    (await call("GET", "/api/credits/balance", { headers: { Cookie: "" } })).status,
    401,
  );
});

test("without creditsd's address at run time, the app's log says what is missing", async () => {
  const server = await startNext({ CREDITSD_URL: undefined, CREDITSD_KEY: "cdk_unused" });
  servers.push(server);
  const response = await call("GET", "/api/credits/balance", { server });
  assert.equal(response.status, 500);
  assert.doesNotMatch(response.text, /baseUrl/); // the browser learns nothing of it
  assert.match(
    server.output(),
    /TypeError: baseUrl is creditsd's address, e\.g\. 'http:\/\/127\.0\.0\.1:8000', not undefined/,
  );
});
