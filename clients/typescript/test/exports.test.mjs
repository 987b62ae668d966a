// What the package exports is its documented surface, nothing more (no server needed).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { test } from "node:test";

test("the main entry and the next subpath export exactly their public names", async () => {
  const main = await import("@creditsd/client");
  assert.deepEqual(Object.keys(main).sort(), [
    "AccountNotActiveError",
    "AuthenticationError",
    "ConflictError",
    "CreditsClient",
    "CreditsError",
    "CreditsSDK",
    "IdempotencyConflictError",
    "InsufficientCreditsError",
    "LimitReachedError",
    "NotFoundError",
    "PaymentProviderError",
    "PermissionError",
    "PricingEngine",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
    "TransportError",
    "VERSION",
    "ValidationError",
    "WebhookVerificationError",
    "verifyWebhook",
  ]);
  assert.equal(main.CreditsSDK, main.CreditsClient);
  const next = await import("@creditsd/client/next");
  assert.deepEqual(Object.keys(next).sort(), [
    "WebhookVerificationError",
    "createCreditsRoutes",
    "createWebhookHandler",
    "verifyWebhook",
  ]);
  const { version } = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
  assert.equal(main.VERSION, version);
});

test("every error class names itself, for the seed's error.name checks", async () => {
  const main = await import("@creditsd/client");
  for (const [name, value] of Object.entries(main)) {
    if (typeof value === "function" && value.prototype instanceof main.CreditsError) {
      assert.equal(new value("m", { code: "c" }).name, name);
    }
  }
});
