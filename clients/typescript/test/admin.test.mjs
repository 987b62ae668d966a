// Listing accounts, the audit log and proxy keys against a real creditsd: pages walked by
// cursor, a grant's audit record, and a proxy key minted, used, listed and revoked.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  AuthenticationError,
  CreditsClient,
  NotFoundError,
  PermissionError,
  ValidationError,
} from "../dist/index.js";
import { startServer } from "./support/server.mjs";

let server;
let admin;
let chat;
let reader;

before(async () => {
  server = await startServer();
  const client = async (scope, name) =>
    new CreditsClient({ baseUrl: server.url, apiKey: await server.createKey(scope, name) });
  [admin, chat, reader] = await Promise.all([
    client("admin", "admin"),
    client("app", "chat"),
    client("read", "dashboard"),
  ]);
});

after(() => server?.stop());

test("accounts page through by cursor, in id order, those matching a search", async () => {
  for (const id of ["team_c", "team_a", "team_b", "solo_1"]) await admin.initializeAccount(id);
  await admin.initializeAccount("team_a", { aliases: ["org:acme"] });
  await admin.grant("team_b", "12.5");

  const first = await reader.listAccounts({ search: "team_", limit: 2 });
  assert.deepEqual(
    first.data.map((account) => account.id),
    ["team_a", "team_b"],
  );
  assert.deepEqual(first.data[0].aliases, ["org:acme"]);
  assert.equal(first.data[1].balance, 12.5);
  assert.equal(first.data[1].exact.balance, "12.5");
  assert.equal(first.exact.data[1].available, "12.5");
  assert.ok(first.next_cursor);
  const second = await reader.listAccounts({
    search: "team_",
    limit: 2,
    cursor: first.next_cursor,
  });
  assert.deepEqual(
    second.data.map((account) => account.id),
    ["team_c"],
  );
  assert.equal(second.next_cursor, null);

  const every = [];
  for await (const account of reader.iterAccounts({ limit: 1 })) every.push(account.id);
  assert.deepEqual(every, ["solo_1", "team_a", "team_b", "team_c"]);
  assert.deepEqual((await reader.listAccounts({ search: "nobody" })).data, []);

  const tooMany = await reader.listAccounts({ limit: 101 }).catch((error) => error);
  assert.ok(tooMany instanceof ValidationError);
  assert.equal(tooMany.status, 422);
  const badCursor = await reader.listAccounts({ cursor: "not-a-cursor" }).catch((e) => e);
  assert.ok(badCursor instanceof ValidationError);
});

test("the audit log shows a grant's record, filtered and paged; admin keys only", async () => {
  const user = "user_audited";
  const before = new Date(Date.now() - 1000);
  await admin.initializeAccount(user);
  const granted = await admin.grant(user, "7.25", { reason: "support refund" });
  await admin.grant(user, 1, { reason: "goodwill" });
  await admin.initializeAccount(user, { status: "frozen" });

  const grants = await admin.listAuditRecords({ target: user, action: "grant" });
  assert.equal(grants.data.length, 2);
  assert.equal(grants.next_cursor, null);
  const [latest, first] = grants.data;
  assert.ok(latest.id > first.id, "newest first");
  assert.equal(first.action, "grant");
  assert.equal(first.target, user);
  assert.match(first.actor, /^key:.*:admin$/);
  assert.equal(JSON.stringify(first.after).includes(granted.id), true);
  assert.equal(typeof first.created_at, "string");

  const everything = [];
  for await (const record of admin.iterAuditRecords({ target: user, limit: 1 }))
    everything.push(record.action);
  assert.equal(everything.length, 3);
  assert.deepEqual(everything, ["account.frozen", "grant", "grant"]);
  const paged = await admin.listAuditRecords({ target: user, limit: 2 });
  assert.equal(paged.data.length, 2);
  const rest = await admin.listAuditRecords({ target: user, limit: 2, cursor: paged.next_cursor });
  assert.deepEqual(
    rest.data.map((record) => record.id),
    [first.id],
  );

  assert.equal((await admin.listAuditRecords({ target: user, since: before })).data.length, 3);
  assert.equal((await admin.listAuditRecords({ target: user, until: before })).data.length, 0);
  assert.equal(
    (await admin.listAuditRecords({ target: user, until: before.toISOString() })).data.length,
    0,
  );
  await assert.rejects(admin.iterAuditRecords({ since: new Date("no") }).next(), TypeError);
  await assert.rejects(admin.listAuditRecords({ since: new Date("no") }), {
    name: "TypeError",
    message: /since is a Date or an RFC 3339 string/,
  });
  const naive = await admin
    .listAuditRecords({ since: "2026-11-01T00:00:00" })
    .catch((error) => error);
  assert.ok(naive instanceof ValidationError);
  const forbidden = await chat.listAuditRecords().catch((error) => error);
  assert.ok(forbidden instanceof PermissionError);
  assert.equal(forbidden.status, 403);
});

test("a proxy key: minted once, used as a bearer on /openai/v1, listed, revoked", async () => {
  const user = "user_proxy";
  await admin.initializeUser(user, 100);
  const minted = await chat.mintProxyKey(user, {
    limit: "25.5",
    expiresIn: 3600,
    name: "browser",
    rateLimit: 30,
  });
  assert.match(minted.id, /^pxk_/);
  assert.match(minted.secret, /^cdp_/);
  assert.equal(minted.account_id, user);
  assert.equal(minted.app, "chat");
  assert.equal(minted.limit, 25.5);
  assert.equal(minted.exact.limit, "25.5");
  assert.equal(minted.spent, 0);
  assert.equal(minted.rate_limit, 30);
  assert.notEqual(minted.expires_at, null);
  assert.equal(minted.revoked_at, null);
  assert.equal(minted.secret.endsWith(minted.hint.slice(-4)), true);

  const models = async (secret) =>
    fetch(`${server.url}/openai/v1/models`, { headers: { Authorization: `Bearer ${secret}` } });
  const listedModels = await models(minted.secret);
  assert.equal(listedModels.status, 200);
  assert.deepEqual(
    (await listedModels.json()).data.map((model) => model.id),
    ["openai/gpt-4o-mini"],
  );
  // A proxy key opens /openai/v1 only, never the ledger's API.
  const asClient = new CreditsClient({ baseUrl: server.url, apiKey: minted.secret });
  const refused = await asClient.getBalance(user).catch((error) => error);
  assert.ok(refused instanceof AuthenticationError);

  const other = await chat.mintProxyKey("user_proxy_other");
  assert.equal(other.limit, null);
  assert.equal(other.expires_at, null);
  const mine = await chat.listProxyKeys({ userId: user });
  assert.deepEqual(
    mine.data.map((key) => key.id),
    [minted.id],
  );
  assert.equal("secret" in mine.data[0], false);
  assert.equal(mine.data[0].hint, minted.hint);
  const first = await chat.listProxyKeys({ limit: 1 });
  assert.deepEqual(
    first.data.map((key) => key.id),
    [other.id],
  );
  const every = [];
  for await (const key of chat.iterProxyKeys({ limit: 1 })) every.push(key.id);
  assert.deepEqual(every, [other.id, minted.id]);

  const revoked = await chat.revokeProxyKey(minted.id);
  assert.notEqual(revoked.revoked_at, null);
  assert.equal((await chat.revokeProxyKey(minted.id)).revoked_at, revoked.revoked_at);
  assert.equal((await models(minted.secret)).status, 401);
  const audited = await admin.listAuditRecords({ target: minted.id });
  assert.deepEqual(
    audited.data.map((record) => record.action),
    ["proxy_key.revoke", "proxy_key.create"],
  );

  const missing = await chat.revokeProxyKey("pxk_nothere").catch((error) => error);
  assert.ok(missing instanceof NotFoundError);
  const unpriced = await chat.mintProxyKey(user, { limit: "0.00001" }).catch((error) => error);
  assert.ok(unpriced instanceof ValidationError);
  await assert.rejects(chat.mintProxyKey(""), TypeError);
  const readOnly = await reader.mintProxyKey(user).catch((error) => error);
  assert.ok(readOnly instanceof PermissionError);
});
