// Team wallets against a real creditsd: members spend one wallet's credits within their
// limits, a refusal past a limit is a LimitReachedError (never a lack of credits), members
// are listed with their spend and removed, and the wallet's, an app's and a proxy key's
// limits are set.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import {
  CreditsClient,
  CreditsError,
  InsufficientCreditsError,
  LimitReachedError,
  NotFoundError,
  PermissionError,
  ValidationError,
} from "../dist/index.js";
import { startServer } from "./support/server.mjs";

let server;
let admin;
let chat;
let canvas;
let reader;

before(async () => {
  server = await startServer();
  const client = async (scope, name) =>
    new CreditsClient({ baseUrl: server.url, apiKey: await server.createKey(scope, name) });
  [admin, chat, canvas, reader] = await Promise.all([
    client("admin", "admin"),
    client("app", "chat"),
    client("app", "canvas"),
    client("read", "dashboard"),
  ]);
});

after(() => server?.stop());

test("a member spends from the wallet within its day limit; past it, LimitReachedError", async () => {
  const wallet = "org:acme";
  await admin.initializeUser(wallet, 1000);
  const ada = await chat.putMember(wallet, "ada", {
    displayName: "Ada",
    limits: [{ amount: 100, period: "day" }],
  });
  assert.equal(ada.account_id, wallet);
  assert.equal(ada.member_id, "ada");
  assert.equal(ada.display_name, "Ada");
  const [limit] = ada.limits;
  assert.deepEqual(
    [limit.scope, limit.subject, limit.period, limit.mode, limit.amount, limit.remaining],
    ["member", "ada", "day", "hard", 100, 100],
  );

  const charged = await chat.charge(wallet, { amount: "60.5" }, { member: "ada" });
  assert.equal(charged.member, "ada");
  assert.equal(charged.balance, 939.5);
  const refused = await chat
    .charge(wallet, { feature: "canvas_generation_simple" }, { member: "ada" })
    .catch((error) => error);
  assert.ok(refused instanceof LimitReachedError);
  assert.ok(refused instanceof CreditsError);
  assert.ok(!(refused instanceof InsufficientCreditsError), "a limit is not a lack of credits");
  assert.equal(refused.name, "LimitReachedError");
  assert.equal(refused.code, "limit_reached");
  assert.equal(refused.status, 402);
  assert.equal(refused.limitSource, "member");
  assert.equal(refused.period, "day");
  assert.equal(refused.limit, 100);
  assert.equal(refused.remaining, 39.5);
  assert.equal(refused.required, 50);
  assert.deepEqual(
    [refused.limitExact, refused.remainingExact, refused.requiredExact],
    ["100", "39.5", "50"],
  );
  assert.match(refused.resetsAt, /^\d{4}-\d{2}-\d{2}T00:00:00/);
  assert.ok(Date.parse(refused.resetsAt) > Date.now());
  assert.match(refused.idempotencyKey, /^sdk_[0-9a-f]{32}$/);
  // The wallet itself still spends: it is the member's limit, not the wallet's credits.
  assert.equal((await chat.charge(wallet, { amount: 50 })).balance, 889.5);

  const hold = await chat.hold(wallet, { amount: 30 }, { member: "ada", expiresIn: 60 });
  assert.equal(hold.member, "ada");
  const heldOut = await chat
    .hold(wallet, { amount: 10 }, { member: "ada" })
    .catch((error) => error);
  assert.ok(heldOut instanceof LimitReachedError);
  assert.equal(heldOut.remaining, 9.5);
  const captured = await chat.capture(hold.id, { amount: 30 });
  assert.equal(captured.transfer.member, "ada");

  const usage = await chat.sendUsage([
    { id: "ada-1", account_id: wallet, member: "ada", feature: "chat_message" },
    { id: "ada-2", account_id: wallet, feature: "chat_message" },
  ]);
  assert.deepEqual(
    usage.map((result) => result.status),
    ["limit_reached", "charged"],
  );
  assert.equal(usage[0].error.limit_source, "member");

  const stranger = await chat
    .charge(wallet, { amount: 1 }, { member: "ad4" })
    .catch((error) => error);
  assert.ok(stranger instanceof NotFoundError);
  assert.equal(stranger.code, "member_not_found");
  assert.equal(stranger.details.member_id, "ad4");
});

test("members are listed by id with their spend, paged, updated and removed", async () => {
  const wallet = "org_listed";
  await admin.initializeUser(wallet, 1000);
  for (const id of ["grace", "alan", "ada"]) {
    await chat.putMember(wallet, id, { limits: [{ amount: 20, period: "week" }] });
  }
  await chat.charge(wallet, { amount: "12.25" }, { member: "alan" });

  const first = await reader.listMembers(wallet, { limit: 2 });
  assert.deepEqual(
    first.data.map((member) => member.member_id),
    ["ada", "alan"],
  );
  const alan = first.data[1];
  assert.deepEqual(
    [alan.limits[0].spent, alan.limits[0].remaining, alan.exact.limits[0].spent],
    [12.25, 7.75, "12.25"],
  );
  assert.equal(first.exact.data[1].limits[0].remaining, "7.75");
  assert.ok(first.next_cursor);
  const second = await reader.listMembers(wallet, { limit: 2, cursor: first.next_cursor });
  assert.deepEqual(
    second.data.map((member) => member.member_id),
    ["grace"],
  );
  assert.equal(second.next_cursor, null);
  const every = [];
  for await (const member of reader.iterMembers(wallet, { limit: 1 })) every.push(member.member_id);
  assert.deepEqual(every, ["ada", "alan", "grace"]);

  // Limits left out stay; a display name is what the last put said.
  const renamed = await chat.putMember(wallet, "alan", { displayName: "Alan T." });
  assert.equal(renamed.display_name, "Alan T.");
  assert.equal(renamed.limits[0].spent, 12.25);

  const removed = await chat.removeMember(wallet, "alan");
  assert.equal(removed.member_id, "alan");
  assert.deepEqual(
    (await reader.listMembers(wallet)).data.map((member) => member.member_id),
    ["ada", "grace"],
  );
  const again = await chat.removeMember(wallet, "alan").catch((error) => error);
  assert.ok(again instanceof NotFoundError);
  assert.equal(again.code, "member_not_found");
  const readOnly = await reader.putMember(wallet, "eve").catch((error) => error);
  assert.ok(readOnly instanceof PermissionError);
  await assert.rejects(chat.listMembers(""), {
    name: "TypeError",
    message: /walletId is an account id/,
  });
  await assert.rejects(chat.removeMember(wallet, ""), { name: "TypeError", message: /memberId/ });
});

test("the wallet's, an app's and a proxy key's limits: set, listed and enforced", async () => {
  const wallet = "org_limited";
  await admin.initializeUser(wallet, 1000);

  const walletLimits = await chat.setWalletLimits(wallet, [{ amount: 50, period: "month" }]);
  assert.deepEqual(
    walletLimits.map((limit) => [limit.scope, limit.subject, limit.period, limit.amount]),
    [["wallet", null, "month", 50]],
  );
  await chat.charge(wallet, { amount: 40 });
  const monthly = await canvas.charge(wallet, { amount: 20 }).catch((error) => error);
  assert.ok(monthly instanceof LimitReachedError);
  assert.deepEqual([monthly.limitSource, monthly.period], ["wallet", "month"]);
  assert.match(monthly.resetsAt, /^\d{4}-\d{2}-01T00:00:00/);
  assert.deepEqual(await chat.setWalletLimits(wallet, []), []);

  const appLimits = await chat.setAppLimits(wallet, "chat", [
    { amount: "5.5", period: "week" },
    { amount: 6, period: "lifetime" },
  ]);
  assert.deepEqual(
    appLimits.map((limit) => [limit.scope, limit.subject, limit.period, limit.exact.amount]),
    [
      ["app", "chat", "week", "5.5"],
      ["app", "chat", "lifetime", "6"],
    ],
  );
  const weekly = await chat.charge(wallet, { amount: 6 }).catch((error) => error);
  assert.ok(weekly instanceof LimitReachedError);
  assert.deepEqual([weekly.limitSource, weekly.period, weekly.limit], ["app", "week", 5.5]);
  await canvas.charge(wallet, { amount: 6 }); // another app: not the chat app's limit
  await chat.setAppLimits(wallet, "chat", [{ amount: 0, period: "lifetime" }]);
  const lifetime = await chat.charge(wallet, { amount: 1 }).catch((error) => error);
  assert.ok(lifetime instanceof LimitReachedError);
  assert.equal(lifetime.period, "lifetime");
  assert.equal(lifetime.resetsAt, null, "a lifetime limit never resets");

  const key = await canvas.mintProxyKey(wallet, { name: "team laptop" });
  const keyLimits = await canvas.setProxyKeyLimits(key.id, [
    { amount: 5, period: "day", mode: "soft" },
  ]);
  const keyLimit = keyLimits.find((limit) => limit.scope === "key");
  assert.deepEqual(
    [keyLimit.subject, keyLimit.period, keyLimit.mode, keyLimit.amount],
    [key.id, "day", "soft", 5],
  );
  assert.deepEqual(
    (await reader.listLimits(wallet)).map((limit) => [limit.scope, limit.period]),
    keyLimits.map((limit) => [limit.scope, limit.period]),
  );
  assert.deepEqual(keyLimits.map((limit) => limit.scope).sort(), ["app", "key"]);

  const notNested = await chat
    .setWalletLimits(wallet, [
      { amount: 100, period: "day" },
      { amount: 50, period: "month" },
    ])
    .catch((error) => error);
  assert.ok(notNested instanceof ValidationError);
  assert.equal(notNested.code, "limits_not_nested");
  const missingKey = await chat.setProxyKeyLimits("pxk_nothere", []).catch((error) => error);
  assert.ok(missingKey instanceof NotFoundError);
  await assert.rejects(chat.setWalletLimits(wallet, { amount: 5, period: "day" }), {
    name: "TypeError",
    message: /limits is an array/,
  });
  await assert.rejects(chat.setAppLimits(wallet, "chat", [{ amount: -1, period: "day" }]), {
    name: "RangeError",
    message: /limits\[0\]\.amount is -1/,
  });
});

test("a proxy key minted for a member shows it; a member the wallet lacks is refused", async () => {
  const wallet = "org_keys";
  await admin.initializeUser(wallet, 100);
  await chat.putMember(wallet, "ada");
  const key = await chat.mintProxyKey(wallet, { member: "ada", name: "ada's laptop" });
  assert.equal(key.member, "ada");
  const listed = await chat.listProxyKeys({ userId: wallet });
  assert.deepEqual(
    listed.data.map((item) => [item.id, item.member]),
    [[key.id, "ada"]],
  );
  assert.equal((await chat.mintProxyKey(wallet)).member, null);
  const stranger = await chat.mintProxyKey(wallet, { member: "ad4" }).catch((error) => error);
  assert.ok(stranger instanceof NotFoundError);
  assert.equal(stranger.code, "member_not_found");
});

test("a portal link for a member opens their page; one for a stranger is member_not_found", async () => {
  const wallet = "org:portal";
  await admin.initializeUser(wallet, 500);
  await chat.putMember(wallet, "ada", { limits: [{ amount: 40, period: "week" }] });
  const link = await chat.createPortalSession(wallet, "https://app.example/team", {
    member: "ada",
  });
  assert.match(link.url, /\/billing\/open\?token=/);
  const opened = await fetch(link.url, { redirect: "manual" });
  assert.equal(opened.status, 303);
  const cookie = opened.headers.get("set-cookie").split(";")[0];
  const page = await (await fetch(`${server.url}/billing`, { headers: { cookie } })).text();
  assert.match(page, /data-testid="member">ada</);
  assert.match(page, /data-testid="left">40</);
  assert.doesNotMatch(page, /500/); // the wallet's balance is not the member's business

  const stranger = await chat
    .createPortalSession(wallet, "https://app.example/team", { member: "zed" })
    .catch((error) => error);
  assert.ok(stranger instanceof NotFoundError);
  assert.equal(stranger.code, "member_not_found");
});

test("a wallet's limits count in its time zone; null sets it back to UTC", async () => {
  const wallet = "org_tokyo";
  assert.equal((await chat.initializeAccount(wallet)).time_zone, "UTC");
  const tokyo = await chat.initializeAccount(wallet, { timeZone: "Asia/Tokyo" });
  assert.equal(tokyo.time_zone, "Asia/Tokyo");
  const [day] = await chat.setWalletLimits(wallet, [{ amount: 5, period: "day" }]);
  // Midnight in Tokyo is 15:00 UTC.
  assert.match(day.resets_at, /T15:00:00/);
  const unknown = await chat
    .initializeAccount(wallet, { timeZone: "Mars/Olympus_Mons" })
    .catch((error) => error);
  assert.ok(unknown instanceof ValidationError);
  assert.equal(unknown.details.field, "time_zone");
  assert.equal((await reader.getAccount(wallet)).time_zone, "Asia/Tokyo");
  assert.equal((await chat.initializeAccount(wallet, { timeZone: null })).time_zone, "UTC");
});
