// Auto top-up against a real creditsd: a rule set and read back with its amounts exact,
// turned off, refused with the server's reasons, and a card session that needs the rule
// first and Stripe configured (this server has none).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  CreditsClient,
  NotFoundError,
  PermissionError,
  ServiceUnavailableError,
  ValidationError,
} from "../dist/index.js";
import { startServer } from "./support/server.mjs";

let server;
let admin;
let web;
let reader;

before(async () => {
  server = await startServer();
  const client = async (scope, name) =>
    new CreditsClient({ baseUrl: server.url, apiKey: await server.createKey(scope, name) });
  [admin, web, reader] = await Promise.all([
    client("admin", "admin"),
    client("app", "web"),
    client("read", "dashboard"),
  ]);
});

after(() => server?.stop());

test("a rule is set, read back exactly and turned off; nothing is charged without a card", async () => {
  const user = "user_topup";
  await admin.initializeUser(user, 150);
  const none = await web.getAutoTopup(user).catch((error) => error);
  assert.ok(none instanceof NotFoundError);
  assert.equal(none.code, "auto_topup_not_found");

  const rule = await web.setAutoTopup(user, {
    threshold: 100,
    targetBalance: "500.0001",
    monthlyCap: 5000n,
  });
  assert.equal(rule.account_id, user);
  assert.equal(rule.enabled, true);
  assert.equal(rule.exact.target_balance, "500.0001");
  assert.equal(rule.exact.monthly_cap, "5000");
  assert.equal(rule.pack, null);
  assert.equal(rule.state, "awaiting_card");
  assert.equal(rule.card, null);
  assert.equal(rule.exact.month_total, "0");

  await web.charge(user, { amount: 100 }); // below the threshold, but no card: no attempt
  const read = await reader.getAutoTopup(user);
  assert.deepEqual({ ...read }, { ...rule });
  assert.equal(read.last_attempt, null);

  const off = await web.setAutoTopup(user, {
    enabled: false,
    threshold: 100,
    pack: "1k",
    monthlyCap: 5000,
  });
  assert.equal(off.state, "off");
  assert.equal(off.pack, "1k");
  assert.equal(off.target_balance, null);
});

test("bad rules are refused here or by the server, naming the problem", async () => {
  const user = "user_bad_rule";
  await admin.initializeAccount(user);
  const both = await web
    .setAutoTopup(user, { threshold: 1, targetBalance: 10, pack: "1k", monthlyCap: 100 })
    .catch((error) => error);
  assert.ok(both instanceof TypeError);
  assert.match(both.message, /exactly one of targetBalance and pack/);
  const nan = await web
    .setAutoTopup(user, { threshold: Number.NaN, pack: "1k", monthlyCap: 100 })
    .catch((error) => error);
  assert.ok(nan instanceof RangeError);

  for (const [rule, code] of [
    [{ threshold: 10, targetBalance: 10, monthlyCap: 100 }, "invalid_auto_topup"],
    [{ threshold: 10, pack: "nope", monthlyCap: 100 }, "unknown_pack"],
    [{ threshold: "0.00001", pack: "1k", monthlyCap: 100 }, "invalid_amount"],
  ]) {
    const refused = await web.setAutoTopup(user, rule).catch((error) => error);
    assert.ok(refused instanceof ValidationError, `${code}: ${refused}`);
    assert.equal(refused.code, code);
  }
  const readOnly = await reader
    .setAutoTopup(user, { threshold: 1, pack: "1k", monthlyCap: 100 })
    .catch((error) => error);
  assert.ok(readOnly instanceof PermissionError);
});

test("a card session needs the rule first, then Stripe", async () => {
  const user = "user_card";
  await admin.initializeAccount(user);
  const urls = { successUrl: "https://app.example/ok", cancelUrl: "https://app.example/no" };
  const noRule = await web.createAutoTopupCardSession(user, urls).catch((error) => error);
  assert.ok(noRule instanceof NotFoundError);
  assert.equal(noRule.code, "auto_topup_not_found");
  await web.setAutoTopup(user, { threshold: 10, pack: "1k", monthlyCap: 2000 });
  const noStripe = await web
    .createAutoTopupCardSession(user, { ...urls, idempotencyKey: "card:user_card" })
    .catch((error) => error);
  assert.ok(noStripe instanceof ServiceUnavailableError);
  assert.equal(noStripe.code, "stripe_not_configured");
  assert.equal(noStripe.idempotencyKey, "card:user_card");
  const missing = await web
    .createAutoTopupCardSession(user, { successUrl: urls.successUrl })
    .catch((error) => error);
  assert.ok(missing instanceof TypeError);
});
