// Bad input is refused before anything is sent, with a message that says what to give;
// what only the server can judge (its scale, zero) comes back as a ValidationError; exact
// amounts go out and come back exactly.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CreditsClient, ValidationError } from "../dist/index.js";
import { startServer } from "./support/server.mjs";

let server;
let admin;
let sent = 0;

before(async () => {
  server = await startServer();
  admin = new CreditsClient({
    baseUrl: server.url,
    apiKey: await server.createKey("admin", "admin"),
    fetch: (...args) => {
      sent += 1;
      return fetch(...args);
    },
  });
  await admin.initializeUser("user_input", 100);
});

after(() => server?.stop());

test("NaN, Infinity, negatives and wrong types are refused client-side, nothing sent", async () => {
  const before = sent;
  const cases = [
    [() => admin.deduct("user_input", Number.NaN, "x"), RangeError, /amount is NaN/],
    [
      () => admin.deduct("user_input", Number.POSITIVE_INFINITY, "x"),
      RangeError,
      /amount is Infinity; give a finite number/,
    ],
    [() => admin.deduct("user_input", -5, "x"), RangeError, /amount is -5; amounts are 0 or more/],
    [() => admin.add("user_input", "-5", "x"), RangeError, /amount "-5" is not a plain decimal/],
    [() => admin.add("user_input", "1e3", "x"), RangeError, /amount "1e3" is not a plain decimal/],
    [() => admin.add("user_input", "ten", "x"), RangeError, /amount "ten" is not a plain decimal/],
    [() => admin.add("user_input", -1n, "x"), RangeError, /amount is -1; amounts are 0 or more/],
    [
      () => admin.deduct("user_input", true, "x"),
      TypeError,
      /amount is a number, a bigint or a decimal string .* not boolean true/,
    ],
    [() => admin.deduct("user_input", null, "x"), TypeError, /not null/],
    [() => admin.deduct("user_input", { value: 1 }, "x"), TypeError, /not an object/],
    [
      () => admin.charge("user_input", { feature: "video_generation", quantity: Number.NaN }),
      RangeError,
      /quantity is NaN/,
    ],
    [
      () => admin.charge("user_input", { amount: 1, feature: "chat_message" }),
      TypeError,
      /exactly one of amount, feature or usage \(got amount, feature\)/,
    ],
    [() => admin.charge("user_input", {}), TypeError, /exactly one of amount, feature or usage$/],
    [() => admin.charge("user_input", 10), TypeError, /give what it costs: \{ amount \}/],
    [
      () =>
        admin.charge("user_input", { feature: "chat_message", amount: undefined, quantity: -1 }),
      RangeError,
      /quantity is -1/,
    ],
    [
      () => admin.deduct("user_input", 1, "x", { score: Number.NaN }),
      RangeError,
      /body.metadata.score is NaN/,
    ],
    [() => admin.deduct(42, 1, "x"), TypeError, /userId is an account id .* not number 42/],
    [() => admin.getBalance(""), TypeError, /userId is an account id/],
    [
      () => admin.hold("user_input", { amount: 1 }, { expiresIn: 1.5 }),
      TypeError,
      /expiresIn is a whole number of seconds/,
    ],
    [
      () => admin.deduct("user_input", 1, "x", undefined, { idempotencyKey: "" }),
      TypeError,
      /idempotencyKey is a non-empty string/,
    ],
    [() => admin.sendUsage({ id: "e" }), TypeError, /sendUsage takes an array/],
    [
      () => admin.retryWebhookDelivery("7"),
      TypeError,
      /deliveryId is a delivery's whole-number id/,
    ],
    [
      () => admin.createCheckoutSession("user_input", "1k", { successUrl: "https://a.example/ok" }),
      TypeError,
      /cancelUrl is required/,
    ],
  ];
  for (const [call, kind, message] of cases) {
    await assert.rejects(call, (error) => {
      assert.ok(error instanceof kind, `${error} is not a ${kind.name}`);
      assert.match(error.message, message);
      return true;
    });
  }
  assert.equal(sent, before, "a refused call was sent anyway");
  assert.throws(() => new CreditsClient({ apiKey: "k" }), /baseUrl is creditsd's address/);
  assert.throws(
    () => new CreditsClient({ baseUrl: "http://x", apiKey: "" }),
    /apiKey is a creditsd API key/,
  );
  assert.throws(
    () => new CreditsClient({ baseUrl: "http://x", apiKey: "k", maxRetries: -1 }),
    /maxRetries is a whole number/,
  );
});

test("a client made from a function reads its options on the first call, not before", async () => {
  // As `next build` loads lib/credits.ts: the module makes its client with no address set.
  await admin.initializeUser("user_lazy", 7);
  const environment = {};
  let read = 0;
  const lazy = new CreditsClient(() => {
    read += 1;
    return { baseUrl: environment.CREDITSD_URL, apiKey: environment.CREDITSD_KEY };
  });
  assert.equal(read, 0);
  await assert.rejects(lazy.getBalance("user_lazy"), {
    name: "TypeError",
    message: "baseUrl is creditsd's address, e.g. 'http://127.0.0.1:8000', not undefined",
  });
  environment.CREDITSD_URL = server.url;
  await assert.rejects(lazy.getBalance("user_lazy"), {
    name: "TypeError",
    message: "apiKey is a creditsd API key (creditsd keys create), not undefined",
  });
  environment.CREDITSD_KEY = await server.createKey("read", "lazy");
  assert.equal(await lazy.getBalance("user_lazy"), 7);
  assert.equal(lazy.baseUrl, server.url);
  environment.CREDITSD_URL = "http://elsewhere.invalid";
  assert.equal(await lazy.getBalance("user_lazy"), 7); // the options it connected with stay
  assert.equal(read, 3);
});

test("what the server refuses comes back as ValidationError with its code", async () => {
  const refuse = async (call, code) => {
    const error = await call().then(
      () => assert.fail("accepted"),
      (failure) => failure,
    );
    assert.ok(error instanceof ValidationError, String(error));
    assert.equal(error.status, 422);
    assert.equal(error.code, code);
    assert.equal(typeof error.message, "string");
    return error;
  };
  const tooFine = await refuse(() => admin.deduct("user_input", "0.00001", "x"), "invalid_amount");
  assert.match(tooFine.message, /more than 4 decimal places/);
  assert.equal(tooFine.details.field, "amount");
  await refuse(() => admin.deduct("user_input", 0, "x"), "invalid_amount");
  // Float arithmetic is sent as it came out, and refused rather than silently rounded.
  await refuse(() => admin.deduct("user_input", 0.1 + 0.2, "x"), "invalid_amount");
  await refuse(() => admin.add("user_input", 1e21, "x"), "invalid_amount");
  assert.equal(await admin.getBalance("user_input"), 100);
});

test("amounts beyond a double's precision go out and come back exactly", async () => {
  const big = await admin.add("user_input", "123456789012345.6789", "exact");
  assert.equal(big.exact.amount, "123456789012345.6789");
  assert.equal(big.exact.balance, "123456789012445.6789");
  assert.equal(big.balance, 123456789012445.67); // the nearest double: display only
  assert.equal(await admin.getBalanceExact("user_input"), "123456789012445.6789");
  const whole = await admin.deduct("user_input", 123456789012345n, "bigint");
  assert.equal(whole.exact.amount, "123456789012345");
  assert.equal(whole.exact.balance, "100.6789");
  const account = await admin.getAccount("user_input");
  assert.equal(account.exact.balance, "100.6789");
});
