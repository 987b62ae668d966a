/**
 * Next.js route handlers for creditsd, on the web's Request and Response alone (no import
 * of Next): what the browser of a signed-in user may ask (its balance, a price, a checkout),
 * and a receiver for creditsd's signed webhooks.
 *
 * ```ts
 * // app/api/credits/[action]/route.ts
 * export const { GET, POST } = createCreditsRoutes({ client: credits, getUserId });
 * ```
 */

import type { CreditsClient } from "./client.js";
import {
  AccountNotActiveError,
  CreditsError,
  InsufficientCreditsError,
  NotFoundError,
  ValidationError,
} from "./errors.js";
import { decimalLiteral } from "./json.js";
import { type WebhookEvent, WebhookVerificationError, verifyWebhook } from "./webhooks.js";

export { WebhookVerificationError, verifyWebhook, type WebhookEvent } from "./webhooks.js";

type Handler = (request: Request) => Promise<Response>;
/** One action of {@link createCreditsRoutes}: its JSON answer for the signed-in user. */
type Route = (userId: string, body: Record<string, unknown>) => Promise<unknown>;

export interface CreditsRoutesOptions {
  /** A client with an app key (it charges nothing here, but checkout needs an app key). */
  client: CreditsClient;
  /** The signed-in user's account id (e.g. Clerk's `auth().userId`), or null: answered 401. */
  getUserId: (request: Request) => string | null | undefined | Promise<string | null | undefined>;
  /** Enables `POST …/checkout` `{ "pack" }`: where Stripe sends the buyer back. */
  checkout?: {
    successUrl: string;
    cancelUrl: string;
  };
  /** Enables `POST …/portal`: where the billing page's back link goes. */
  portal?: { returnUrl: string };
  /**
   * The app's public address (e.g. `https://app.example`): POSTs from its origin are the
   * app's own whatever the request's headers say. Needed only behind a proxy that rewrites
   * `Host` without sending `X-Forwarded-Host`, or ends TLS without sending
   * `X-Forwarded-Proto`. Undefined or empty: none.
   */
  siteUrl?: string | undefined;
  /** Other sites whose pages may POST here: exact origins, e.g. `https://www.example.com`. */
  allowedOrigins?: string[];
}

/**
 * Handlers for a dynamic route `app/api/credits/[action]/route.ts`, by the last path segment:
 *
 * - `GET balance` → `{ balance, balance_exact }` (what the user can spend now)
 * - `GET packs` → `{ packs: [{ name, credits, label, display_price }] }`
 * - `POST quote` `{ feature, quantity? }` → `{ amount, amount_exact, catalog_version }`
 * - `POST checkout` `{ pack }` → `{ id, url, client_secret, publishable_key }` (with `checkout`)
 * - `POST portal` → `{ url }` (with `portal`)
 *
 * Without a signed-in user: 401. A POST must be JSON from the app's own origin (else 403:
 * the origin its `Host` or `X-Forwarded-Host` names, `siteUrl`'s, or one of
 * `allowedOrigins`), so another site cannot make a user's browser start a checkout. Errors
 * answer `{ "error": { "code", "message" } }`: creditsd's own for what the user can act on
 * (a 402 adds `required` and `available`; a frozen or closed account's checkout is 409),
 * a generic 502 `credits_unavailable` for the rest. A
 * `siteUrl` or `allowedOrigins` entry that is not an http(s) origin throws a TypeError here.
 */
export function createCreditsRoutes(options: CreditsRoutesOptions): {
  GET: Handler;
  POST: Handler;
} {
  const { client } = options;
  const trusted = trustedOrigins(options);
  const reads: Record<string, Route> = {
    balance: async (userId) => {
      const account = await client.getAccount(userId);
      return { balance: account.available, balance_exact: account.exact.available };
    },
    packs: async () => ({ packs: await client.listPacks() }),
  };
  const writes: Record<string, Route> = {
    quote: async (_userId, body) => {
      const { feature, quantity } = body;
      if (typeof feature !== "string") throw invalid("feature is the name of a priced feature");
      if (quantity !== undefined) {
        try {
          decimalLiteral(quantity, "quantity");
        } catch (error) {
          throw invalid((error as Error).message);
        }
      }
      const quote = await client.quote(
        quantity === undefined ? { feature } : { feature, quantity: quantity as string },
      );
      return {
        amount: quote.amount,
        amount_exact: quote.exact.amount,
        catalog_version: quote.catalog_version,
      };
    },
  };
  if (options.checkout !== undefined) {
    const { successUrl, cancelUrl } = options.checkout;
    writes.checkout = async (userId, body) => {
      if (typeof body.pack !== "string") throw invalid("pack is the name of a credit pack");
      const session = await client.createCheckoutSession(userId, body.pack, {
        successUrl,
        cancelUrl,
      });
      return {
        id: session.id,
        url: session.url,
        client_secret: session.client_secret,
        publishable_key: session.publishable_key,
      };
    };
  }
  if (options.portal !== undefined) {
    const { returnUrl } = options.portal;
    writes.portal = async (userId) => ({
      url: (await client.createPortalSession(userId, returnUrl)).url,
    });
  }

  const handle = async (
    request: Request,
    routes: Record<string, Route>,
    other: Record<string, Route>,
  ): Promise<Response> => {
    const action = new URL(request.url).pathname.replace(/\/+$/, "").split("/").at(-1) ?? "";
    const route = Object.hasOwn(routes, action) ? routes[action] : undefined;
    if (route === undefined) {
      if (Object.hasOwn(other, action)) {
        return json(405, errorBody("method_not_allowed", "method not allowed"), {
          Allow: request.method === "GET" ? "POST" : "GET",
        });
      }
      return json(404, errorBody("not_found", "no such credits route"));
    }
    let body: Record<string, unknown> = {};
    if (request.method === "POST") {
      const refused = crossSite(request, trusted);
      if (refused !== undefined) return refused;
      const parsed = await readJson(request);
      if (parsed instanceof Response) return parsed;
      body = parsed;
    }
    const userId = await options.getUserId(request);
    if (typeof userId !== "string" || userId === "") {
      return json(401, errorBody("unauthenticated", "sign in first"));
    }
    try {
      return json(200, await route(userId, body));
    } catch (error) {
      return answerError(error);
    }
  };
  return {
    GET: (request) => handle(request, reads, writes),
    POST: (request) => handle(request, writes, reads),
  };
}

export interface WebhookHandlerOptions {
  /** The endpoint's `whsec_…` secret (or several while rotating). */
  secret: string | readonly string[];
  /** Handles one verified event; a throw answers 500, and creditsd delivers it again later. */
  onEvent: (event: WebhookEvent) => void | Promise<void>;
  /** Seconds a delivery's timestamp may be from now (default 300). */
  toleranceSeconds?: number;
}

/**
 * A POST handler for creditsd's webhooks: verifies the signature on the raw body, then calls
 * `onEvent`. A delivery that does not verify is answered 400 and never reaches `onEvent`.
 * creditsd may deliver a message more than once: use `event.id` to ignore a repeat.
 */
export function createWebhookHandler(options: WebhookHandlerOptions): Handler {
  return async (request) => {
    const body = await request.text();
    let event: WebhookEvent;
    try {
      event = await verifyWebhook(options.secret, body, request.headers, {
        ...(options.toleranceSeconds === undefined
          ? {}
          : { toleranceSeconds: options.toleranceSeconds }),
      });
    } catch (error) {
      if (error instanceof WebhookVerificationError) {
        return json(400, errorBody(error.code, error.message));
      }
      throw error;
    }
    await options.onEvent(event);
    return json(200, { received: true });
  };
}

/** The origins named by `siteUrl` and `allowedOrigins`, checked. */
function trustedOrigins(options: CreditsRoutesOptions): Set<string> {
  const trusted = new Set<string>();
  const { siteUrl, allowedOrigins = [] } = options;
  if (siteUrl !== undefined && siteUrl !== "") {
    const origin = originOf(siteUrl);
    if (origin === undefined) {
      throw new TypeError(
        `siteUrl is the app's address, e.g. 'https://app.example', not ${JSON.stringify(siteUrl)}`,
      );
    }
    trusted.add(origin);
  }
  for (const entry of allowedOrigins) {
    if (originOf(entry) !== entry) {
      throw new TypeError(
        "allowedOrigins holds origins (scheme, host and port, no path or trailing slash), " +
          `e.g. 'https://www.example.com', not ${JSON.stringify(entry)}`,
      );
    }
    trusted.add(entry);
  }
  return trusted;
}

/** An http(s) address's origin (`https://app.example:8443`), or undefined. */
function originOf(address: string): string | undefined {
  try {
    const url = new URL(address);
    return url.protocol === "http:" || url.protocol === "https:" ? url.origin : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The origins a request was sent to: `request.url`'s, and its `Host` and `X-Forwarded-Host`
 * under the scheme of `X-Forwarded-Proto` (else of `request.url`). `next start` makes
 * `request.url` `http://localhost:<port>` whatever the browser asked for, but passes the
 * Host on and fills in the X-Forwarded headers a proxy did not send.
 *
 * Trusting these headers is sound against cross-site requests: a browser writes `Host`
 * itself, and a page cannot add `X-Forwarded-Host` or `X-Forwarded-Proto` to a request to
 * another origin without a CORS preflight that the app would have to allow. A client that
 * forges them is not a browser, so it carries no user's cookies to misuse.
 */
function requestOrigins(request: Request): string[] {
  const url = new URL(request.url);
  const forwardedProto = firstValue(request.headers.get("X-Forwarded-Proto"))?.toLowerCase();
  const scheme =
    forwardedProto === "http" || forwardedProto === "https"
      ? forwardedProto
      : url.protocol.slice(0, -1);
  const origins = [url.origin];
  for (const host of [
    request.headers.get("Host"),
    firstValue(request.headers.get("X-Forwarded-Host")),
  ]) {
    const origin = host ? originOf(`${scheme}://${host}`) : undefined;
    if (origin !== undefined) origins.push(origin);
  }
  return origins;
}

/** The first of a header's comma-separated values (the one the first proxy wrote). */
function firstValue(header: string | null): string | undefined {
  const value = header?.split(",")[0]?.trim();
  return value === "" ? undefined : value;
}

/**
 * 403 for a POST another site's page made the browser send, else undefined. With an
 * Origin (every current browser sends one on a POST), it must be one of the request's own
 * or a trusted one: `null` (a sandboxed frame, a redirect from elsewhere) never is. Without
 * one, `Sec-Fetch-Site` must not say `cross-site` or `same-site` (a sibling subdomain).
 */
function crossSite(request: Request, trusted: ReadonlySet<string>): Response | undefined {
  const origin = request.headers.get("Origin");
  const fetchSite = request.headers.get("Sec-Fetch-Site");
  const sameOrigin =
    origin === null
      ? fetchSite !== "cross-site" && fetchSite !== "same-site"
      : trusted.has(origin) || requestOrigins(request).includes(origin);
  if (!sameOrigin) return json(403, errorBody("forbidden", "cross-site request refused"));
  const type = request.headers.get("Content-Type") ?? "";
  if (!/^application\/json\s*(;|$)/i.test(type)) {
    return json(
      415,
      errorBody("unsupported_media_type", "send JSON (Content-Type: application/json)"),
    );
  }
  return undefined;
}

async function readJson(request: Request): Promise<Record<string, unknown> | Response> {
  const text = await request.text();
  if (text.trim() === "") return {};
  try {
    const value: unknown = JSON.parse(text);
    if (typeof value === "object" && value !== null && !Array.isArray(value)) {
      return value as Record<string, unknown>;
    }
  } catch {
    // answered below
  }
  return json(400, errorBody("invalid_json", "the body is not a JSON object"));
}

/** What the browser may see of a failure: creditsd's code and message for what the user can
 * fix, a generic 502 for the rest (a wrong key or an outage is the app's business). */
function answerError(error: unknown): Response {
  if (error instanceof InsufficientCreditsError) {
    return json(402, {
      error: {
        code: error.code,
        message: error.message,
        required: error.required,
        available: error.available,
      },
    });
  }
  // A frozen or closed account buys nothing (409): the user can ask why, an outage they cannot.
  if (
    error instanceof ValidationError ||
    error instanceof NotFoundError ||
    error instanceof AccountNotActiveError
  ) {
    return json(error.status ?? 422, errorBody(error.code, error.message));
  }
  if (error instanceof CreditsError) {
    return json(502, errorBody("credits_unavailable", "the credits service is unavailable"));
  }
  throw error;
}

function invalid(message: string): ValidationError {
  return new ValidationError(message, { status: 422, code: "validation_error" });
}

function errorBody(code: string, message: string): { error: { code: string; message: string } } {
  return { error: { code, message } };
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "Content-Type": "application/json", "Cache-Control": "no-store", ...headers },
  });
}
