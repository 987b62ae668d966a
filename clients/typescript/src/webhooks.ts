/**
 * Verifying creditsd's webhooks, signed by the Standard Webhooks scheme: `webhook-id`,
 * `webhook-timestamp` and `webhook-signature` (`v1,<base64 HMAC-SHA256 of id.timestamp.body>`,
 * several separated by spaces while a secret rotates), keyed by the endpoint's `whsec_…`
 * secret. Web Crypto only: Node, edge runtimes and browsers alike.
 */

import { parseExact, type Exact } from "./json.js";
import { webCrypto } from "./platform.js";

/** A delivery: `{ id, type, timestamp, data }`, and `exact` with amounts as decimal strings. */
export interface WebhookEvent<Data = Record<string, unknown>> {
  id: string;
  type: string;
  timestamp: string;
  data: Data;
  readonly exact: Exact<{ id: string; type: string; timestamp: string; data: Data }>;
}

export type WebhookFailure =
  | "missing_headers"
  | "invalid_timestamp"
  | "stale_timestamp"
  | "invalid_secret"
  | "invalid_signature"
  | "invalid_event";

/** A delivery that is not creditsd's, or not as it sent it: answer it 400 and ignore it. */
export class WebhookVerificationError extends Error {
  override name = "WebhookVerificationError";
  constructor(
    message: string,
    readonly code: WebhookFailure,
  ) {
    super(message);
  }
}

export interface VerifyOptions {
  /** Seconds a delivery's timestamp may be from now, either way (default 300). */
  toleranceSeconds?: number;
  /** The current time (default: now). */
  now?: Date | number;
}

type HeaderSource = Headers | Record<string, string | string[] | undefined>;

const encoder = new TextEncoder();

/**
 * The event a delivery carries, once its signature is checked against `secret` (or any of
 * several, while you rotate). `body` is the request body exactly as received: read it with
 * `await request.text()`, never re-serialized JSON. Throws WebhookVerificationError.
 */
export async function verifyWebhook<Data = Record<string, unknown>>(
  secret: string | readonly string[],
  body: string | Uint8Array,
  headers: HeaderSource,
  options: VerifyOptions = {},
): Promise<WebhookEvent<Data>> {
  const id = header(headers, "webhook-id");
  const timestamp = header(headers, "webhook-timestamp");
  const signatures = header(headers, "webhook-signature");
  if (id === undefined || timestamp === undefined || signatures === undefined) {
    throw new WebhookVerificationError(
      "missing webhook-id, webhook-timestamp or webhook-signature",
      "missing_headers",
    );
  }
  if (!/^[0-9]{1,12}$/.test(timestamp)) {
    throw new WebhookVerificationError(
      "webhook-timestamp is not seconds since 1970",
      "invalid_timestamp",
    );
  }
  const tolerance = options.toleranceSeconds ?? 300;
  const now = Math.floor(Number(options.now ?? Date.now()) / 1000);
  if (Math.abs(now - Number(timestamp)) > tolerance) {
    throw new WebhookVerificationError(
      `webhook-timestamp is more than ${tolerance} seconds from now (a replay, or a wrong clock)`,
      "stale_timestamp",
    );
  }
  const bodyBytes = typeof body === "string" ? encoder.encode(body) : body;
  const prefix = encoder.encode(`${id}.${timestamp}.`);
  const signed = new Uint8Array(prefix.length + bodyBytes.length);
  signed.set(prefix);
  signed.set(bodyBytes, prefix.length);

  const { subtle } = await webCrypto();
  const candidates = signatures
    .split(" ")
    .filter((part) => part.startsWith("v1,"))
    .map((part) => base64Bytes(part.slice(3)))
    .filter((bytes): bytes is Uint8Array<ArrayBuffer> => bytes !== undefined);
  let verified = false;
  for (const each of typeof secret === "string" ? [secret] : secret) {
    const key = await subtle.importKey(
      "raw",
      secretKey(each),
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["verify"],
    );
    for (const candidate of candidates) {
      // Web Crypto's verify compares in constant time; every candidate is checked.
      if (await subtle.verify("HMAC", key, candidate, signed)) verified = true;
    }
  }
  if (!verified) {
    throw new WebhookVerificationError("no signature matches the secret", "invalid_signature");
  }
  const text = typeof body === "string" ? body : new TextDecoder().decode(body);
  let event: unknown;
  try {
    event = JSON.parse(text);
  } catch {
    event = undefined;
  }
  if (
    typeof event !== "object" ||
    event === null ||
    typeof (event as { type?: unknown }).type !== "string"
  ) {
    throw new WebhookVerificationError("the body is not a creditsd event", "invalid_event");
  }
  Object.defineProperty(event, "exact", { value: parseExact(text), enumerable: false });
  return event as WebhookEvent<Data>;
}

function header(headers: HeaderSource, name: string): string | undefined {
  if (typeof (headers as Headers).get === "function")
    return (headers as Headers).get(name) ?? undefined;
  const record = headers as Record<string, string | string[] | undefined>;
  const key = Object.keys(record).find((each) => each.toLowerCase() === name);
  const value = key === undefined ? undefined : record[key];
  return Array.isArray(value) ? value.join(" ") : value;
}

function secretKey(secret: string): Uint8Array<ArrayBuffer> {
  if (typeof secret !== "string") {
    throw new WebhookVerificationError(
      "the secret is the endpoint's whsec_… string",
      "invalid_secret",
    );
  }
  const bytes = base64Bytes(secret.startsWith("whsec_") ? secret.slice(6) : secret);
  if (bytes === undefined || bytes.length === 0) {
    throw new WebhookVerificationError("the secret is not whsec_ and base64", "invalid_secret");
  }
  return bytes;
}

function base64Bytes(text: string): Uint8Array<ArrayBuffer> | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.length % 4 !== 0) return undefined;
  const binary = atob(text);
  return Uint8Array.from(binary, (char) => char.charCodeAt(0));
}
