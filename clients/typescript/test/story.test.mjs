// The seed's story against a real creditsd: one balance shared by several apps, each with
// its own app key, priced by the server's catalog; and the rest of the client's surface.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  AccountNotActiveError,
  AuthenticationError,
  CreditsClient,
  CreditsError,
  CreditsSDK,
  IdempotencyConflictError,
  InsufficientCreditsError,
  NotFoundError,
  PermissionError,
  PricingEngine,
  ServiceUnavailableError,
  ValidationError,
} from "../dist/index.js";
import { startServer } from "./support/server.mjs";

let server;
let admin;
let chat;
let canvas;
let studio;
const keys = {};

before(async () => {
  server = await startServer();
  const client = async (scope, name) => {
    keys[name] = await server.createKey(scope, name);
    return new CreditsClient({ baseUrl: server.url, apiKey: keys[name], app: name });
  };
  [admin, chat, canvas, studio] = await Promise.all([
    client("admin", "admin"),
    client("app", "chat"),
    client("app", "canvas"),
    client("app", "studio"),
  ]);
});

after(() => server?.stop());

test("one account's 100 credits, spent by two apps and refused by a third", async () => {
  const user = "user_story";
  const account = await admin.initializeUser(user, 100);
  assert.equal(account.available, 100);

  const chatCharge = await chat.charge(
    user,
    { feature: "chat_message" },
    { metadata: { app: "chat" } },
  );
  assert.equal(chatCharge.amount, 10);
  assert.equal(chatCharge.balance, 90);
  assert.equal(chatCharge.app, "chat");
  const canvasCharge = await canvas.charge(user, { feature: "canvas_generation_simple" });
  assert.equal(canvasCharge.amount, 50);
  assert.equal(canvasCharge.balance, 40);

  assert.equal(await chat.getBalance(user), 40);
  assert.equal(await canvas.getBalance(user), 40);
  assert.equal(await studio.getBalance(user), 40);

  const pricing = new PricingEngine(studio);
  assert.equal(await pricing.calculateCost("video_generation", 30), 300);
  const refused = await studio.charge(user, { feature: "video_generation", quantity: 30 }).then(
    () => assert.fail("a 300-credit video went through on 40 credits"),
    (error) => error,
  );
  assert.ok(refused instanceof InsufficientCreditsError);
  assert.ok(refused instanceof CreditsError);
  assert.equal(refused.name, "InsufficientCreditsError");
  assert.equal(refused.code, "insufficient_credits");
  assert.equal(refused.status, 402);
  assert.equal(refused.required, 300);
  assert.equal(refused.available, 40);
  assert.equal(refused.requiredExact, "300");
  assert.equal(refused.details.account_id, user);
  assert.match(refused.idempotencyKey, /^sdk_[0-9a-f]{32}$/);
  assert.equal(await studio.getBalance(user), 40);
});

test("the seed's calls: deduct, add, getTransactions and every page, verify and rebuild", async () => {
  const credits = new CreditsSDK({ baseUrl: server.url, apiKey: keys.admin });
  const user = "user_seed";
  await credits.initializeUser(user, 100);
  const spent = await credits.deduct(user, 10, "chat_message", { app: "app.sparked.world" });
  assert.equal(spent.balance, 90);
  assert.equal(spent.description, "chat_message");
  assert.deepEqual(spent.metadata, { app: "app.sparked.world" });
  const granted = await credits.add(user, "25.5", "support refund", { granted_by: "admin_1" });
  assert.equal(granted.balance, 115.5);
  assert.equal(granted.exact.balance, "115.5");
  assert.equal(granted.kind, "grant");
  // The result serializes as the server's transfer, as the seed's admin route returns it.
  assert.equal(JSON.parse(JSON.stringify(granted)).balance, 115.5);
  assert.equal("exact" in JSON.parse(JSON.stringify(granted)), false);

  const first = await credits.getTransactions(user, { limit: 2 });
  assert.deepEqual(
    first.data.map((t) => t.change),
    [25.5, -10],
  );
  assert.ok(first.next_cursor);
  const second = await credits.getTransactions(user, { limit: 2, cursor: first.next_cursor });
  assert.deepEqual(
    second.data.map((t) => t.change),
    [100],
  );
  assert.equal(second.next_cursor, null);
  const every = [];
  for await (const transfer of credits.iterTransactions(user, { limit: 1 }))
    every.push(transfer.exact.change);
  assert.deepEqual(every, ["25.5", "-10", "100"]);

  const verification = await credits.verifyBalance(user);
  assert.equal(verification.valid, true);
  assert.equal(verification.cached, 115.5);
  assert.equal(verification.calculated, 115.5);
  assert.equal((await credits.rebuildBalance(user)).valid, true);

  const runway = await credits.getRunway(user); // a new account: no day of history yet
  assert.equal(runway.reason, "too_little_history");
  assert.equal(runway.exact.available, "115.5");
  assert.equal(runway.runway_days, null);
});

test("one idempotency key: a repeat is replayed, another request with it is refused", async () => {
  const user = "user_keys";
  await admin.initializeUser(user, 100);
  const first = await chat.deduct(user, 10, "chat", undefined, { idempotencyKey: "msg-1" });
  const again = await chat.deduct(user, 10, "chat", undefined, { idempotencyKey: "msg-1" });
  assert.equal(first.replayed, false);
  assert.equal(again.replayed, true);
  assert.equal(again.id, first.id);
  assert.equal(await chat.getBalance(user), 90);
  // Keys are per app: the canvas app's msg-1 is its own.
  await canvas.deduct(user, 10, "canvas", undefined, { idempotencyKey: "msg-1" });
  assert.equal(await chat.getBalance(user), 80);
  const conflict = await chat
    .deduct(user, 11, "chat", undefined, { idempotencyKey: "msg-1" })
    .catch((error) => error);
  assert.ok(conflict instanceof IdempotencyConflictError);
  assert.equal(conflict.status, 409);
  assert.equal(conflict.code, "idempotency_conflict");
  assert.equal(conflict.idempotencyKey, "msg-1");
});

test("holds: reserve, extend, capture the actual cost, the rest comes back", async () => {
  const user = "user_holds";
  await admin.initializeUser(user, 100);
  const hold = await studio.hold(
    user,
    { feature: "video_generation", quantity: 5 },
    { expiresIn: 600 },
  );
  assert.equal(hold.amount, 50);
  assert.equal(await studio.getBalance(user), 50);
  const extended = await studio.extend(hold.id, 900);
  assert.equal(extended.status, "open");
  const done = await studio.capture(hold.id, { feature: "video_generation", quantity: "3.5" });
  assert.equal(done.hold.status, "captured");
  assert.equal(done.transfer.amount, 35);
  assert.equal(done.transfer.balance, 65);
  const again = await studio.capture(hold.id, { feature: "video_generation", quantity: "3.5" });
  assert.equal(again.replayed, true);
  assert.equal(await studio.getBalance(user), 65);

  const other = await studio.hold(user, { amount: 20 });
  assert.equal((await studio.release(other.id)).status, "released");
  assert.equal((await studio.release(other.id)).status, "released");
  assert.equal((await studio.getHold(other.id)).status, "released");
  const missing = await studio.getHold("hold_nothere").catch((error) => error);
  assert.ok(missing instanceof NotFoundError);
  assert.equal(missing.status, 404);
});

test("quotes, usage batches, packs, pricing and checkout", async () => {
  const quote = await chat.quote({ feature: "video_generation", quantity: "2.5" });
  assert.equal(quote.amount, 25);
  assert.equal(quote.exact.amount, "25");
  assert.equal(typeof quote.catalog_version, "number");
  const pricing = new PricingEngine(chat);
  assert.deepEqual(await pricing.unitPrice("video_generation"), { price: "10", unit: "second" });
  assert.deepEqual(await pricing.unitPrice("chat_message"), { price: "10", unit: "use" });
  assert.equal(await pricing.unitPrice("nothing"), undefined);
  const catalog = await pricing.catalog();
  assert.equal(catalog.features.chat_message.display_name, "Chat message");
  assert.deepEqual(
    [catalog.meters.training_job.unit, catalog.meters.training_job.unit_plural],
    ["gpu_hour", "gpu_hours"],
  );
  assert.equal(await pricing.calculateCostExact("training_job", "0.25"), "50");

  await admin.initializeUser("user_usage", 100);
  const results = await chat.sendUsage([
    { id: "ev-1", account_id: "user_usage", feature: "chat_message", quantity: 2 },
    { id: "ev-2", account_id: "user_usage", feature: "no_such_feature" },
  ]);
  assert.deepEqual(
    results.map((r) => r.status),
    ["charged", "invalid"],
  );
  const repeat = await chat.sendUsage([
    { id: "ev-1", account_id: "user_usage", feature: "chat_message", quantity: 2 },
  ]);
  assert.equal(repeat[0].status, "duplicate");
  assert.equal(await chat.getBalance("user_usage"), 80);

  const packs = await chat.listPacks();
  assert.deepEqual(
    packs.map((p) => [p.name, p.credits, p.label]),
    [["1k", 1000, "Starter"]],
  );
  // This server has no Stripe key: a clear 503 once the retries are spent.
  const quick = new CreditsClient({ baseUrl: server.url, apiKey: keys.chat, maxRetries: 0 });
  const checkout = await quick
    .createCheckoutSession("user_usage", "1k", {
      successUrl: "https://app.example/ok",
      cancelUrl: "https://app.example/no",
    })
    .catch((error) => error);
  assert.ok(checkout instanceof ServiceUnavailableError);
  assert.equal(checkout.code, "stripe_not_configured");
});

test("each error code has its class, with code, status and details", async () => {
  const stranger = new CreditsClient({
    baseUrl: server.url,
    apiKey: "cdk_not_a_key",
    maxRetries: 0,
  });
  const unauthenticated = await stranger.getBalance("user_story").catch((error) => error);
  assert.ok(unauthenticated instanceof AuthenticationError);
  assert.equal(unauthenticated.status, 401);
  assert.equal(unauthenticated.code, "unauthenticated");

  const forbidden = await chat.add("user_story", 1000, "free money").catch((error) => error);
  assert.ok(forbidden instanceof PermissionError);
  assert.equal(forbidden.status, 403);
  assert.equal(forbidden.code, "forbidden");

  const unknown = await chat.charge("user_story", { feature: "teleport" }).catch((error) => error);
  assert.ok(unknown instanceof ValidationError);
  assert.equal(unknown.status, 422);
  assert.equal(unknown.code, "unknown_feature");
  assert.ok(Array.isArray(unknown.details.known));

  const verifyMissing = await admin.verifyBalance("user_never_seen").catch((error) => error);
  assert.ok(verifyMissing instanceof NotFoundError);
  assert.equal(verifyMissing.code, "account_not_found");
  assert.equal(verifyMissing.idempotencyKey, undefined);
  const runwayMissing = await admin.getRunway("user_never_seen").catch((error) => error);
  assert.ok(runwayMissing instanceof NotFoundError);
});

test("model usage priced by the catalog, a frozen account, a billing page link", async () => {
  const user = "user_models";
  await admin.initializeUser(user, 100);
  const usage = { model: "openai/gpt-4o-mini", input_tokens: 1_000_000, output_tokens: 1_000_000 };
  assert.equal((await chat.quote({ usage })).amount, 75);
  const charged = await chat.charge(user, { usage });
  assert.equal(charged.amount, 75);
  assert.equal(charged.balance, 25);

  const portal = await chat.createPortalSession(user, "https://app.example/settings");
  assert.match(portal.url, /\/billing\/open\?token=/);

  await admin.initializeAccount(user, { status: "frozen" });
  const frozen = await chat.charge(user, { amount: 1 }).catch((error) => error);
  assert.ok(frozen instanceof AccountNotActiveError);
  assert.equal(frozen.status, 409);
  assert.equal(frozen.code, "account_frozen");
  assert.equal(frozen.accountId, user);
});
