// Retries through a fault-injecting proxy in front of a real creditsd: dropped connections,
// a lost answer, 503 and 429 are retried with the write's one idempotency key, so the
// charge happens once.
import assert from "node:assert/strict";
import { createServer, request as forward } from "node:http";
import { after, before, test } from "node:test";
import { CreditsClient, RateLimitError, TransportError } from "../dist/index.js";
import { startServer } from "./support/server.mjs";

let server;
let proxy;
let proxyUrl;
let adminKey;
let appKey;
/** What the proxy does with each coming request to a path, in order: then "forward". */
const plans = new Map();
/** Every request the proxy saw: method, path, Idempotency-Key, what it did. */
const seen = [];

function passOn(incoming, outgoing, body, { loseAnswer }) {
  const target = new URL(incoming.url, server.url);
  const upstream = forward(
    target,
    { method: incoming.method, headers: { ...incoming.headers, host: target.host } },
    (answer) => {
      if (loseAnswer) {
        // The server did the work; its answer never reaches the client.
        answer.resume();
        answer.on("end", () => outgoing.socket.destroy());
        return;
      }
      outgoing.writeHead(answer.statusCode, answer.headers);
      answer.pipe(outgoing);
    },
  );
  upstream.end(body);
}

before(async () => {
  server = await startServer();
  [adminKey, appKey] = await Promise.all([
    server.createKey("admin", "admin"),
    server.createKey("app", "chat"),
  ]);
  proxy = createServer((incoming, outgoing) => {
    const chunks = [];
    incoming.on("data", (chunk) => chunks.push(chunk));
    incoming.on("end", () => {
      const path = new URL(incoming.url, "http://x").pathname;
      const action = plans.get(path)?.shift() ?? "forward";
      seen.push({
        method: incoming.method,
        path,
        key: incoming.headers["idempotency-key"],
        action,
      });
      const body = Buffer.concat(chunks);
      if (action === "drop") outgoing.socket.destroy();
      else if (action === "lose-answer") passOn(incoming, outgoing, body, { loseAnswer: true });
      else if (action.startsWith("status:")) {
        const [, status, retryAfter] = action.split(":");
        const headers = { "Content-Type": "application/json" };
        if (retryAfter !== undefined) headers["Retry-After"] = retryAfter;
        outgoing.writeHead(Number(status), headers);
        outgoing.end(
          JSON.stringify({
            error: { code: status === "429" ? "rate_limited" : "unavailable", message: "injected" },
          }),
        );
      } else passOn(incoming, outgoing, body, { loseAnswer: false });
    });
  });
  await new Promise((resolve) => proxy.listen(0, "127.0.0.1", resolve));
  proxyUrl = `http://127.0.0.1:${proxy.address().port}`;
  const admin = new CreditsClient({ baseUrl: server.url, apiKey: adminKey });
  await admin.initializeUser("user_retry", 100);
});

after(async () => {
  proxy?.closeAllConnections();
  await new Promise((resolve) => (proxy ? proxy.close(resolve) : resolve()));
  await server?.stop();
});

const client = (options = {}) =>
  new CreditsClient({ baseUrl: proxyUrl, apiKey: appKey, backoffMs: 10, ...options });

test("a dropped connection, a lost answer and a 503 are retried with one key; one charge", async () => {
  seen.length = 0;
  plans.set("/v1/charges", ["drop", "lose-answer", "status:503:0"]);
  const transfer = await client({ maxRetries: 3 }).charge("user_retry", {
    feature: "chat_message",
  });
  const attempts = seen.filter((each) => each.path === "/v1/charges");
  assert.deepEqual(
    attempts.map((each) => each.action),
    ["drop", "lose-answer", "status:503:0", "forward"],
  );
  const keys = new Set(attempts.map((each) => each.key));
  assert.equal(keys.size, 1);
  assert.match([...keys][0], /^sdk_[0-9a-f]{32}$/);
  // The second attempt charged; the fourth got its stored answer.
  assert.equal(transfer.replayed, true);
  assert.equal(transfer.balance, 90);
  const history = await client().getTransactions("user_retry");
  assert.equal(history.data.filter((each) => each.kind === "charge").length, 1);
});

test("a caller's own key is the one every attempt carries", async () => {
  seen.length = 0;
  plans.set("/v1/charges", ["status:502", "drop"]);
  await client({ maxRetries: 2 }).deduct("user_retry", 5, "chat", undefined, {
    idempotencyKey: "chat:msg-7",
  });
  assert.deepEqual(
    seen.filter((each) => each.path === "/v1/charges").map((each) => each.key),
    ["chat:msg-7", "chat:msg-7", "chat:msg-7"],
  );
  assert.equal(await client().getBalance("user_retry"), 85);
});

test("429 waits out Retry-After; one too long goes to the caller", async () => {
  plans.set("/v1/charges", ["status:429:1"]);
  const started = Date.now();
  await client({ maxRetries: 1 }).charge("user_retry", { amount: 1 });
  assert.ok(Date.now() - started >= 950, "Retry-After: 1 was not waited out");

  plans.set("/v1/charges", ["status:429:120"]);
  const error = await client({ maxRetries: 3 })
    .charge("user_retry", { amount: 1 }, { idempotencyKey: "too-soon" })
    .catch((failure) => failure);
  assert.ok(error instanceof RateLimitError);
  assert.equal(error.status, 429);
  assert.equal(error.retryAfter, 120);
  assert.equal(error.idempotencyKey, "too-soon");
  assert.equal(await client().getBalance("user_retry"), 84);
});

test("no answer after every retry: TransportError with the key, safe to send again", async () => {
  seen.length = 0;
  plans.set("/v1/charges", ["lose-answer", "drop", "drop"]);
  const error = await client({ maxRetries: 2 })
    .charge("user_retry", { amount: 4 })
    .catch((failure) => failure);
  assert.ok(error instanceof TransportError);
  assert.equal(error.code, "transport_error");
  assert.equal(error.attempts, 3);
  assert.equal(error.status, undefined);
  assert.match(error.idempotencyKey, /^sdk_/);
  assert.equal(seen.length, 3);
  // The first attempt did charge; sending again with the key answers that charge.
  const again = await client().charge(
    "user_retry",
    { amount: 4 },
    { idempotencyKey: error.idempotencyKey },
  );
  assert.equal(again.replayed, true);
  assert.equal(again.balance, 80);
});

test("a proxy key's mint is not sent twice: a lost answer's key is listed, to be revoked", async () => {
  seen.length = 0;
  plans.set("/v1/proxy-keys", ["lose-answer"]);
  const error = await client({ maxRetries: 3 })
    .mintProxyKey("user_retry")
    .catch((failure) => failure);
  assert.ok(error instanceof TransportError);
  assert.equal(error.attempts, 1);
  assert.equal(error.idempotencyKey, undefined);
  plans.set("/v1/proxy-keys", ["status:503"]);
  assert.equal(
    (
      await client({ maxRetries: 3 })
        .mintProxyKey("user_retry")
        .catch((e) => e)
    ).status,
    503,
  );
  plans.set("/v1/proxy-keys", ["status:429:0"]);
  const minted = await client({ maxRetries: 1 }).mintProxyKey("user_retry");
  assert.deepEqual(
    seen.map((each) => each.action),
    ["lose-answer", "status:503", "status:429:0", "forward"],
  );
  const keys = await client().listProxyKeys({ userId: "user_retry" });
  assert.equal(keys.data.length, 2);
  assert.equal(keys.data[0].id, minted.id);
  assert.equal((await client().revokeProxyKey(keys.data[1].id)).revoked_at === null, false);
});

test("4xx answers are not retried", async () => {
  seen.length = 0;
  await client({ maxRetries: 3 })
    .charge("user_retry", { amount: 1000 })
    .catch(() => undefined);
  assert.equal(seen.length, 1);
});

test("an attempt that takes longer than timeoutMs is a network failure, retried", async () => {
  const slow = createServer(() => {});
  await new Promise((resolve) => slow.listen(0, "127.0.0.1", resolve));
  const error = await new CreditsClient({
    baseUrl: `http://127.0.0.1:${slow.address().port}`,
    apiKey: appKey,
    timeoutMs: 100,
    maxRetries: 1,
    backoffMs: 1,
  })
    .getBalance("user_retry")
    .catch((failure) => failure);
  slow.closeAllConnections();
  slow.close();
  assert.ok(error instanceof TransportError);
  assert.equal(error.attempts, 2);
  assert.match(error.message, /no answer after 2 attempts/);
});
