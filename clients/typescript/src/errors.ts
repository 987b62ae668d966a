/**
 * The errors the client throws, one class per kind of failure a caller handles differently:
 *
 * ```text
 * CreditsError                       code, status, details, idempotencyKey
 * ├── AuthenticationError            401 unauthenticated, key_expired
 * ├── PermissionError                403 forbidden
 * ├── NotFoundError                  404 account_not_found, hold_not_found, member_not_found, …
 * ├── ConflictError                  409 hold_not_open, …
 * │   ├── IdempotencyConflictError   409 idempotency_conflict
 * │   └── AccountNotActiveError      409 account_frozen, account_closed
 * ├── InsufficientCreditsError       402 insufficient_credits (required, available)
 * ├── LimitReachedError              402 limit_reached (limitSource, period, limit, remaining,
 * │                                      required, resetsAt)
 * ├── ValidationError                400, 413, 415, 422 (invalid_amount, unknown_feature, …)
 * ├── RateLimitError                 429 (retryAfter)
 * ├── ServerError                    5xx
 * │   ├── PaymentProviderError       502, 503 payment_provider_error (stripeRequestId)
 * │   └── ServiceUnavailableError    503 unavailable, stripe_not_configured
 * └── TransportError                 no answer at all after every retry (transport_error)
 * ```
 *
 * Mistakes in the arguments (NaN, a negative amount, a wrong type) are thrown before
 * anything is sent, as the platform's `RangeError` and `TypeError`.
 */

import type { components } from "./schema.js";

type LimitOut = components["schemas"]["LimitOut"];

/** The fields of creditsd's error body besides `code` and `message`, amounts as numbers. */
export type ErrorDetails = Record<string, unknown>;

interface ErrorInit {
  status?: number | undefined;
  code: string;
  details?: ErrorDetails | undefined;
  exactDetails?: ErrorDetails | undefined;
}

/** Every error the client throws from the server or the network. */
export class CreditsError extends Error {
  override name = "CreditsError";
  /** creditsd's stable error code (`insufficient_credits`, `transport_error`, …). */
  readonly code: string;
  /** The HTTP status, or undefined when no answer came. */
  readonly status: number | undefined;
  /** The error body's other fields (`required`, `available`, `account_id`, `known`, …). */
  readonly details: ErrorDetails;
  /** The same details with every number as its exact decimal string. */
  readonly exactDetails: ErrorDetails;
  /**
   * The idempotency key a failed write was sent with (undefined for reads): sending the
   * write again with it is safe, whether or not the server applied the first attempt.
   */
  idempotencyKey: string | undefined = undefined;

  constructor(message: string, init: ErrorInit) {
    super(message);
    this.code = init.code;
    this.status = init.status;
    this.details = init.details ?? {};
    this.exactDetails = init.exactDetails ?? {};
  }
}

/** 401: the API key is missing, unknown, revoked or expired. */
export class AuthenticationError extends CreditsError {
  override name = "AuthenticationError";
}

/** 403: the API key's scope does not allow this (grants and webhooks need an admin key). */
export class PermissionError extends CreditsError {
  override name = "PermissionError";
}

/** 404: the account, hold, transfer or endpoint named does not exist. */
export class NotFoundError extends CreditsError {
  override name = "NotFoundError";
}

/** 409: the request clashes with the current state (a hold no longer open, …). */
export class ConflictError extends CreditsError {
  override name = "ConflictError";
}

/** 409: this idempotency key was already used with a different request. */
export class IdempotencyConflictError extends ConflictError {
  override name = "IdempotencyConflictError";
}

/** 409: the account is frozen or closed; it spends nothing until an operator reactivates it. */
export class AccountNotActiveError extends ConflictError {
  override name = "AccountNotActiveError";
  get accountId(): string | undefined {
    return stringOrUndefined(this.details.account_id);
  }
}

/** 402: the account cannot afford it; `required` and `available` say by how much. */
export class InsufficientCreditsError extends CreditsError {
  override name = "InsufficientCreditsError";
  /** What it costs, in credits (exact: {@link requiredExact}). */
  get required(): number | undefined {
    return numberOrUndefined(this.details.required);
  }
  /** What the account can spend now, in credits (exact: {@link availableExact}). */
  get available(): number | undefined {
    return numberOrUndefined(this.details.available);
  }
  get requiredExact(): string | undefined {
    return stringOrUndefined(this.exactDetails.required);
  }
  get availableExact(): string | undefined {
    return stringOrUndefined(this.exactDetails.available);
  }
  get accountId(): string | undefined {
    return stringOrUndefined(this.details.account_id);
  }
}

/**
 * 402: a hard spend limit of the wallet, the member, the app or the proxy key leaves less
 * than the write needs; the account may well afford it, so this is no
 * {@link InsufficientCreditsError}.
 */
export class LimitReachedError extends CreditsError {
  override name = "LimitReachedError";
  /** Whose limit it is: the wallet's own, the member's, the app's or the proxy key's. */
  get limitSource(): LimitOut["scope"] | undefined {
    return stringOrUndefined(this.details.limit_source) as LimitOut["scope"] | undefined;
  }
  get period(): LimitOut["period"] | undefined {
    return stringOrUndefined(this.details.period) as LimitOut["period"] | undefined;
  }
  /** The limit, in credits per period (exact: {@link limitExact}). */
  get limit(): number | undefined {
    return numberOrUndefined(this.details.limit);
  }
  /** What the limit leaves in its current window, in credits (exact: {@link remainingExact}). */
  get remaining(): number | undefined {
    return numberOrUndefined(this.details.remaining);
  }
  /** What the write needs, in credits (exact: {@link requiredExact}). */
  get required(): number | undefined {
    return numberOrUndefined(this.details.required);
  }
  get limitExact(): string | undefined {
    return stringOrUndefined(this.exactDetails.limit);
  }
  get remainingExact(): string | undefined {
    return stringOrUndefined(this.exactDetails.remaining);
  }
  get requiredExact(): string | undefined {
    return stringOrUndefined(this.exactDetails.required);
  }
  /** When the next window starts (RFC 3339, UTC); null: never, for a `lifetime` limit. */
  get resetsAt(): string | null | undefined {
    const resetsAt = this.details.resets_at;
    return resetsAt === null ? null : stringOrUndefined(resetsAt);
  }
}

/** 400, 413, 415 or 422: the server refused the request as written. */
export class ValidationError extends CreditsError {
  override name = "ValidationError";
}

/** 429: too many requests; `retryAfter` is the wait the server asked for, in seconds. */
export class RateLimitError extends CreditsError {
  override name = "RateLimitError";
  retryAfter: number | undefined = undefined;
}

/** 5xx: the server or its database failed; a write is safe to send again with its key. */
export class ServerError extends CreditsError {
  override name = "ServerError";
}

/**
 * 502: Stripe failed or refused, `stripeRequestId` finds the request in its dashboard;
 * 503: Stripe could not be reached (`details.retry_after`: seconds to wait).
 */
export class PaymentProviderError extends ServerError {
  override name = "PaymentProviderError";
  get stripeRequestId(): string | undefined {
    return stringOrUndefined(this.details.stripe_request_id);
  }
}

/** 503: the database is busy or down (`unavailable`), or a provider is not configured. */
export class ServiceUnavailableError extends ServerError {
  override name = "ServiceUnavailableError";
}

/** No answer from the server (refused, dropped, timed out) after every retry. */
export class TransportError extends CreditsError {
  override name = "TransportError";
  readonly attempts: number;
  constructor(message: string, attempts: number, cause: unknown) {
    super(message, { code: "transport_error" });
    this.attempts = attempts;
    this.cause = cause;
  }
}

type ErrorClass = new (message: string, init: ErrorInit) => CreditsError;

const BY_CODE: Record<string, ErrorClass> = {
  account_closed: AccountNotActiveError,
  account_frozen: AccountNotActiveError,
  account_not_active: AccountNotActiveError,
  idempotency_conflict: IdempotencyConflictError,
  insufficient_credits: InsufficientCreditsError,
  limit_reached: LimitReachedError,
  payment_provider_error: PaymentProviderError,
};

const BY_STATUS: Record<number, ErrorClass> = {
  400: ValidationError,
  401: AuthenticationError,
  402: InsufficientCreditsError,
  403: PermissionError,
  404: NotFoundError,
  409: ConflictError,
  413: ValidationError,
  415: ValidationError,
  422: ValidationError,
  429: RateLimitError,
  503: ServiceUnavailableError,
};

/**
 * The error an answer stands for, chosen by its `code` first, then by its status. `body` and
 * `exactBody` are the answer parsed plainly and exactly (undefined when it was not JSON).
 */
export function errorFor(
  status: number,
  statusText: string,
  body: unknown,
  exactBody: unknown,
): CreditsError {
  const error = fieldOf(body, "error");
  const code = fieldOf(error, "code");
  if (typeof code !== "string") {
    // Not creditsd's error shape: a proxy or load balancer in front answered.
    const Class = BY_STATUS[status] ?? (status >= 500 ? ServerError : CreditsError);
    return new Class(statusText || `HTTP ${status}`, { status, code: "http_error" });
  }
  const message = fieldOf(error, "message");
  const Class = BY_CODE[code] ?? BY_STATUS[status] ?? (status >= 500 ? ServerError : CreditsError);
  return new Class(typeof message === "string" ? message : code, {
    status,
    code,
    details: withoutCodeAndMessage(error),
    exactDetails: withoutCodeAndMessage(fieldOf(exactBody, "error")),
  });
}

function withoutCodeAndMessage(error: unknown): ErrorDetails {
  if (typeof error !== "object" || error === null) return {};
  const { code: _code, message: _message, ...details } = error as Record<string, unknown>;
  return details;
}

function fieldOf(value: unknown, name: string): unknown {
  return typeof value === "object" && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)[name]
    : undefined;
}

function numberOrUndefined(value: unknown): number | undefined {
  return typeof value === "number" ? value : undefined;
}

function stringOrUndefined(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}
