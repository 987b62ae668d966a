// The Next.js helpers as a Next.js app runs them (web Request in, Response out), on a real
// creditsd whose Stripe is a small local fake.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { after, before, test } from "node:test";
import { CreditsClient } from "../dist/index.js";
import { createCreditsRoutes } from "../dist/next.js";
import { startServer } from "./support/server.mjs";

let server;
let stripe;
let client;
let routes;
const checkoutRequests = [];

before(async () => {
  // Stripe's API as far as creditsd's checkout uses it: a customer, then a Checkout Session.
  stripe = createServer((request, response) => {
    const chunks = [];
    request.on("data", (chunk) => chunks.push(chunk));
    request.on("end", () => {
      const form = new URLSearchParams(Buffer.concat(chunks).toString());
      response.setHeader("Content-Type", "application/json");
      if (request.url === "/v1/customers") {
        response.end(JSON.stringify({ id: "cus_test_1", object: "customer" }));
      } else if (request.url === "/v1/checkout/sessions") {
        checkoutRequests.push(form);
        response.end(
          JSON.stringify({
            id: "cs_test_1",
            object: "checkout.session",
            url: "https://checkout.stripe.com/c/pay/cs_test_1",
            client_secret: null,
          }),
        );
      } else {
        response.statusCode = 404;
        response.end(
          JSON.stringify({ error: { message: "no such route", type: "invalid_request_error" } }),
        );
      }
    });
  });
  await new Promise((resolve) => stripe.listen(0, "127.0.0.1", resolve));
  server = await startServer({
    env: {
      CREDITSD_STRIPE__SECRET_KEY: "sk_test_fake",
      CREDITSD_STRIPE__API_BASE: `http://127.0.0.1:${stripe.address().port}`,
    },
  });
  const [adminKey, appKey] = await Promise.all([
    server.createKey("admin", "admin"),
    server.createKey("app", "web"),
  ]);
  await new CreditsClient({ baseUrl: server.url, apiKey: adminKey }).initializeUser(
    "user_next",
    100,
  );
  client = new CreditsClient({ baseUrl: server.url, apiKey: appKey });
  routes = createCreditsRoutes({
    client,
    // The app's session: here a header stands in for Clerk's auth().
    getUserId: (request) => request.headers.get("x-test-user"),
    checkout: {
      successUrl: "https://app.example/credits?paid=1",
      cancelUrl: "https://app.example/credits",
    },
    portal: { returnUrl: "https://app.example/settings" },
  });
});

after(async () => {
  await server?.stop();
  stripe?.closeAllConnections();
  await new Promise((resolve) => (stripe ? stripe.close(resolve) : resolve()));
});

const APP = "https://app.example";

function call(method, action, { user = "user_next", body, headers = {} } = {}) {
  const init = { method, headers: { ...(user ? { "x-test-user": user } : {}), ...headers } };
  if (body !== undefined) {
    init.body = typeof body === "string" ? body : JSON.stringify(body);
    init.headers = { "Content-Type": "application/json", Origin: APP, ...init.headers };
  }
  return routes[method](new Request(`${APP}/api/credits/${action}`, init));
}

test("the signed-in user's balance, packs and a quote", async () => {
  const balance = await call("GET", "balance");
  assert.equal(balance.status, 200);
  assert.equal(balance.headers.get("Cache-Control"), "no-store");
  assert.deepEqual(await balance.json(), { balance: 100, balance_exact: "100" });

  const packs = await (await call("GET", "packs")).json();
  assert.deepEqual(
    packs.packs.map((pack) => [pack.name, pack.credits]),
    [["1k", 1000]],
  );

  const quote = await call("POST", "quote", {
    body: { feature: "video_generation", quantity: 30 },
  });
  assert.equal(quote.status, 200);
  const priced = await quote.json();
  assert.equal(priced.amount, 300);
  assert.equal(priced.amount_exact, "300");
});

test("checkout for the signed-in user, with the app's own return addresses", async () => {
  const response = await call("POST", "checkout", { body: { pack: "1k" } });
  assert.equal(response.status, 200);
  const session = await response.json();
  assert.equal(session.id, "cs_test_1");
  assert.equal(session.url, "https://checkout.stripe.com/c/pay/cs_test_1");
  const sent = checkoutRequests.at(-1);
  assert.equal(sent.get("client_reference_id"), "user_next");
  assert.equal(sent.get("success_url"), "https://app.example/credits?paid=1");
  assert.equal(sent.get("cancel_url"), "https://app.example/credits");

  const unknown = await call("POST", "checkout", { body: { pack: "free-lunch" } });
  assert.equal(unknown.status, 422);
  assert.equal((await unknown.json()).error.code, "unknown_pack");
});

test("a link to the signed-in user's billing page", async () => {
  const response = await call("POST", "portal", { body: {} });
  assert.equal(response.status, 200);
  const { url } = await response.json();
  assert.ok(url.startsWith(`${server.url}/billing/open?token=`), url);
});

test("no signed-in user: 401, and nothing asked of creditsd", async () => {
  for (const [method, action, body] of [
    ["GET", "balance"],
    ["POST", "quote", { feature: "chat_message" }],
    ["POST", "checkout", { pack: "1k" }],
  ]) {
    const response = await call(method, action, { user: null, body });
    assert.equal(response.status, 401);
    assert.deepEqual(await response.json(), {
      error: { code: "unauthenticated", message: "sign in first" },
    });
  }
});

test("a POST from another site, or not JSON, is refused before anything happens", async () => {
  const before = checkoutRequests.length;
  const crossSite = await call("POST", "checkout", {
    body: { pack: "1k" },
    headers: { Origin: "https://evil.example" },
  });
  assert.equal(crossSite.status, 403);
  assert.equal((await crossSite.json()).error.code, "forbidden");
  const fetchSite = await routes.POST(
    new Request(`${APP}/api/credits/checkout`, {
      method: "POST",
      headers: {
        "x-test-user": "user_next",
        "Content-Type": "application/json",
        "Sec-Fetch-Site": "cross-site",
      },
      body: JSON.stringify({ pack: "1k" }),
    }),
  );
  assert.equal(fetchSite.status, 403);
  const form = await call("POST", "checkout", {
    body: "pack=1k",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
  });
  assert.equal(form.status, 415);
  assert.equal(checkoutRequests.length, before);
});

test("under next start, the Origin is checked against the Host the browser sent", async () => {
  // `next start` makes request.url http://localhost:<port> whatever the browser asked for.
  const nextRoutes = createCreditsRoutes({
    client,
    getUserId: () => "user_next",
    siteUrl: "https://shop.example/credits",
    allowedOrigins: ["https://www.example.com"],
  });
  const quote = (headers) =>
    nextRoutes.POST(
      new Request("http://localhost:3000/api/credits/quote", {
        method: "POST",
        headers: { "Content-Type": "application/json", ...headers },
        body: JSON.stringify({ feature: "chat_message" }),
      }),
    );
  for (const headers of [
    { Host: "127.0.0.1:3000", Origin: "http://127.0.0.1:3000" },
    { Host: "app.example", "X-Forwarded-Proto": "https", Origin: "https://app.example" },
    { Host: "app.example:443", "X-Forwarded-Proto": "https", Origin: "https://app.example" },
    {
      Host: "localhost:3000",
      "X-Forwarded-Host": "app.example, proxy.internal",
      "X-Forwarded-Proto": "https, http",
      Origin: "https://app.example",
    },
    { Host: "localhost:3000", Origin: "https://shop.example" },
    { Host: "localhost:3000", Origin: "https://www.example.com" },
    { Host: "app.example", "Sec-Fetch-Site": "same-origin" },
    { Host: "app.example" }, // no Origin and no Sec-Fetch-Site: not a browser's cross-site POST
  ]) {
    const response = await quote(headers);
    assert.equal(response.status, 200, JSON.stringify(headers));
  }
  for (const headers of [
    { Host: "app.example", Origin: "https://app.example" }, // an https page, a plain http request
    { Host: "app.example", "X-Forwarded-Proto": "https", Origin: "http://app.example" },
    { Host: "app.example", Origin: "https://evil.example", "Sec-Fetch-Site": "cross-site" },
    { Host: "app.example", "X-Forwarded-Host": "app.example", Origin: "https://shop.example.evil" },
    { Host: "app.example", Origin: "null" },
    { Host: "app.example", "Sec-Fetch-Site": "same-site" },
  ]) {
    const response = await quote(headers);
    assert.equal(response.status, 403, JSON.stringify(headers));
    assert.equal((await response.json()).error.code, "forbidden");
  }
});

test("siteUrl and allowedOrigins that could never match are refused when the routes are made", () => {
  const make = (options) => () =>
    createCreditsRoutes({ client, getUserId: () => "user_next", ...options });
  assert.throws(make({ siteUrl: "app.example" }), {
    name: "TypeError",
    message: `siteUrl is the app's address, e.g. 'https://app.example', not "app.example"`,
  });
  assert.throws(make({ siteUrl: "ftp://app.example" }), TypeError);
  for (const entry of ["https://app.example/", "https://APP.example", "app.example", "*"]) {
    assert.throws(make({ allowedOrigins: [entry] }), /^TypeError: allowedOrigins holds origins/);
  }
  // Unset (an environment variable missing at build time, or set empty): no siteUrl.
  make({ siteUrl: undefined })();
  make({ siteUrl: "" })();
});

test("bad requests get clear answers without creditsd's internals", async () => {
  const broken = await call("POST", "quote", { body: "{not json" });
  assert.equal(broken.status, 400);
  assert.equal((await broken.json()).error.code, "invalid_json");
  const noFeature = await call("POST", "quote", { body: { quantity: 3 } });
  assert.equal(noFeature.status, 422);
  const badQuantity = await call("POST", "quote", {
    body: { feature: "video_generation", quantity: -3 },
  });
  assert.equal(badQuantity.status, 422);
  assert.match((await badQuantity.json()).error.message, /quantity/);
  const unknown = await call("POST", "quote", { body: { feature: "teleport" } });
  assert.equal(unknown.status, 422);
  assert.equal((await unknown.json()).error.code, "unknown_feature");
  assert.equal((await call("GET", "secrets")).status, 404);
  const wrongMethod = await call("GET", "checkout");
  assert.equal(wrongMethod.status, 405);
  assert.equal(wrongMethod.headers.get("Allow"), "POST");

  // A broken key is the app's problem: the browser sees a generic 502.
  const misconfigured = createCreditsRoutes({
    client: new CreditsClient({ baseUrl: server.url, apiKey: "cdk_wrong", maxRetries: 0 }),
    getUserId: () => "user_next",
  });
  const hidden = await misconfigured.GET(new Request(`${APP}/api/credits/balance`));
  assert.equal(hidden.status, 502);
  assert.deepEqual(await hidden.json(), {
    error: { code: "credits_unavailable", message: "the credits service is unavailable" },
  });
});

test("a frozen account's checkout is a 409 the user can read, not an outage", async () => {
  const admin = new CreditsClient({
    baseUrl: server.url,
    apiKey: await server.createKey("admin", "freezer"),
  });
  await admin.initializeAccount("user_frozen", { status: "frozen" });
  const before = checkoutRequests.length;
  const refused = await call("POST", "checkout", { user: "user_frozen", body: { pack: "1k" } });
  assert.equal(refused.status, 409);
  const { error } = await refused.json();
  assert.equal(error.code, "account_frozen");
  assert.match(error.message, /user_frozen/);
  assert.equal(checkoutRequests.length, before);
});
