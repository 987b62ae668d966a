// creditsd's own signed webhooks, delivered by `creditsd serve` to a local receiver, verified
// by the client; tampered, stale and wrongly signed ones refused.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createServer } from "node:http";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { promisify } from "node:util";
import { CreditsClient, WebhookVerificationError, verifyWebhook } from "../dist/index.js";
import { createWebhookHandler } from "../dist/next.js";
import { creditsdCommand, startServer } from "./support/server.mjs";

let server;
let receiver;
let admin;
const deliveries = [];
let delivered = () => {};

before(async () => {
  server = await startServer();
  admin = new CreditsClient({
    baseUrl: server.url,
    apiKey: await server.createKey("admin", "admin"),
  });
  receiver = createServer((request, response) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => {
      deliveries.push({ headers: request.headers, body: Buffer.concat(chunks).toString("utf8") });
      response.writeHead(204).end();
      delivered();
    });
  });
  await new Promise((resolve) => receiver.listen(0, "127.0.0.1", resolve));
});

after(async () => {
  receiver?.closeAllConnections();
  await new Promise((resolve) => (receiver ? receiver.close(resolve) : resolve()));
  await server?.stop();
});

/** A delivery as a web Request, as a Next.js route handler receives it. */
function asRequest({ headers, body }) {
  return new Request("http://app.example/api/webhooks/credits", {
    method: "POST",
    headers: Object.entries(headers).filter(
      ([name]) => name.startsWith("webhook-") || name === "content-type",
    ),
    body,
  });
}

test("a real delivery verifies; the same with a changed body, secret or time does not", async () => {
  const endpoint = await admin.createWebhookEndpoint(
    `http://127.0.0.1:${receiver.address().port}/hooks`,
    ["charge.succeeded"],
    { description: "TypeScript client test" },
  );
  assert.match(endpoint.secret, /^whsec_/);
  const arrived = new Promise((resolve) => (delivered = resolve));
  await admin.initializeUser("user_hooks", 100);
  const charge = await admin.deduct("user_hooks", "12.5", "render", { job: "j1" });
  let timer;
  await Promise.race([
    arrived,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error("no delivery within 15 s")), 15_000);
    }),
  ]).finally(() => clearTimeout(timer));
  const delivery = deliveries[0];

  const event = await verifyWebhook(endpoint.secret, delivery.body, delivery.headers);
  assert.equal(event.type, "charge.succeeded");
  assert.equal(event.id, delivery.headers["webhook-id"]);
  assert.equal(JSON.stringify(event.data).includes(charge.id), true);
  assert.equal(typeof event.exact, "object");

  const seen = [];
  const handler = createWebhookHandler({
    secret: endpoint.secret,
    onEvent: (each) => seen.push(each.type),
  });
  const accepted = await handler(asRequest(delivery));
  assert.equal(accepted.status, 200);
  assert.deepEqual(await accepted.json(), { received: true });
  assert.deepEqual(seen, ["charge.succeeded"]);

  const tamperedBody = delivery.body.replace("12.5", "1.5");
  assert.notEqual(tamperedBody, delivery.body);
  const refused = await handler(asRequest({ ...delivery, body: tamperedBody }));
  assert.equal(refused.status, 400);
  assert.equal((await refused.json()).error.code, "invalid_signature");
  assert.deepEqual(seen, ["charge.succeeded"], "a tampered delivery reached onEvent");

  const otherSecret = "whsec_" + Buffer.alloc(32, 7).toString("base64");
  await assert.rejects(verifyWebhook(otherSecret, delivery.body, delivery.headers), {
    name: "WebhookVerificationError",
    code: "invalid_signature",
  });
  const later = Number(delivery.headers["webhook-timestamp"]) * 1000 + 301_000;
  await assert.rejects(
    verifyWebhook(endpoint.secret, delivery.body, delivery.headers, { now: later }),
    {
      code: "stale_timestamp",
    },
  );
  // Another moment in the signed headers breaks the signature too.
  const shifted = {
    ...delivery.headers,
    "webhook-timestamp": String(Number(delivery.headers["webhook-timestamp"]) + 1),
  };
  await assert.rejects(verifyWebhook(endpoint.secret, delivery.body, shifted), {
    code: "invalid_signature",
  });
  // While a secret rotates, any of several signatures, or secrets, may match.
  const rotated = {
    ...delivery.headers,
    "webhook-signature": `v1,${Buffer.alloc(32).toString("base64")} ${delivery.headers["webhook-signature"]}`,
  };
  assert.equal(
    (await verifyWebhook(endpoint.secret, delivery.body, rotated)).type,
    "charge.succeeded",
  );
  assert.equal(
    (await verifyWebhook([otherSecret, endpoint.secret], delivery.body, delivery.headers)).type,
    "charge.succeeded",
  );
  const { "webhook-signature": _, ...unsigned } = delivery.headers;
  await assert.rejects(verifyWebhook(endpoint.secret, delivery.body, unsigned), {
    code: "missing_headers",
  });

  // The endpoint and its deliveries as the admin API lists them.
  const [listed] = await admin.listWebhookEndpoints();
  assert.equal(listed.id, endpoint.id);
  assert.notEqual(listed.secret, endpoint.secret, "the secret is shown only once");
  let sent = await admin.listWebhookDeliveries({ destination: endpoint.id, limit: 10 });
  for (let wait = 0; sent.data[0].status === "pending" && wait < 50; wait += 1) {
    // The receiver has answered; creditsd records the delivery a moment later.
    await new Promise((resolve) => setTimeout(resolve, 100));
    sent = await admin.listWebhookDeliveries({ destination: endpoint.id, limit: 10 });
  }
  assert.equal(sent.data[0].message_id, delivery.headers["webhook-id"]);
  assert.equal(sent.data[0].status, "delivered");
  assert.equal((await admin.retryWebhookDelivery(sent.data[0].id)).status, "pending");
  await admin.deduct("user_hooks", 1, "render");
  const every = [];
  for await (const each of admin.iterWebhookDeliveries({ destination: endpoint.id, limit: 1 }))
    every.push(each.id);
  assert.equal(every.length, 2);
  assert.equal(every[1], sent.data[0].id, "newest first, across pages");
  const disabled = await admin.disableWebhookEndpoint(endpoint.id);
  assert.notEqual(disabled.disabled_at, null);
});

test("signatures made by creditsd's Python signer verify, over bytes and text alike", async () => {
  const python = join(dirname(creditsdCommand()), "python");
  const script = `
import json, sys
from creditsd.webhooks.signing import headers, new_secret
secret = new_secret()
body = ('{"id": "evt_1", "type": "balance.low", "timestamp": "2026-12-01T00:00:00Z", '
        '"data": {"account_id": "user_é", "balance": 922337203685477.5807}}')
print(json.dumps({"secret": secret, "body": body, "headers": headers(secret, "msg_1", int(sys.argv[1]), body)}))
`;
  const now = Math.floor(Date.now() / 1000);
  const { stdout } = await promisify(execFile)(python, ["-c", script, String(now)]);
  const { secret, body, headers } = JSON.parse(stdout);
  const event = await verifyWebhook(secret, body, new Headers(headers));
  assert.equal(event.type, "balance.low");
  assert.equal(event.data.account_id, "user_é");
  assert.equal(event.exact.data.balance, "922337203685477.5807");
  assert.equal((await verifyWebhook(secret, new TextEncoder().encode(body), headers)).id, "evt_1");
  await assert.rejects(
    verifyWebhook(secret, body.replace("é", "e"), headers),
    WebhookVerificationError,
  );
  await assert.rejects(verifyWebhook("whsec_not base64!", body, headers), {
    code: "invalid_secret",
  });
  await assert.rejects(verifyWebhook(secret, body, { ...headers, "webhook-timestamp": "soon" }), {
    code: "invalid_timestamp",
  });
});
