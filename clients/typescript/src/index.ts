/** @creditsd/client: creditsd's HTTP API for TypeScript, on the platform's fetch alone. */

export * from "./client.js";
export {
  AccountNotActiveError,
  AuthenticationError,
  ConflictError,
  CreditsError,
  type ErrorDetails,
  IdempotencyConflictError,
  InsufficientCreditsError,
  LimitReachedError,
  NotFoundError,
  PaymentProviderError,
  PermissionError,
  RateLimitError,
  ServerError,
  ServiceUnavailableError,
  TransportError,
  ValidationError,
} from "./errors.js";
export type { Exact } from "./json.js";
export { PricingEngine } from "./pricing.js";
export {
  type VerifyOptions,
  type WebhookEvent,
  type WebhookFailure,
  WebhookVerificationError,
  verifyWebhook,
} from "./webhooks.js";
export type { components, paths } from "./schema.js";
