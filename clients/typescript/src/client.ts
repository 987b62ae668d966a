/**
 * The creditsd client: one method per API call, every write idempotent, failures retried.
 */

import { CreditsError, RateLimitError, TransportError, errorFor } from "./errors.js";
import {
  type Exact,
  JsonNumber,
  decimalLiteral,
  describe,
  parseExact,
  stringifyExact,
} from "./json.js";
import { randomId } from "./platform.js";
import type { components } from "./schema.js";

type Schemas = components["schemas"];

export const VERSION = "0.1.0";

/**
 * Credits as a caller writes them: a number, a bigint (whole credits), or a decimal string
 * (`"10.5"`) that is sent exactly as written. A number is the nearest double to what was meant: it is exact for
 * whole credits up to 2^53 and for up to 15 significant digits written plainly (`10.5`,
 * `0.0001`), so use strings for larger or finer amounts, and never compute amounts with
 * float arithmetic (`0.1 + 0.2` is sent as `0.30000000000000004`, which the server refuses).
 */
export type Amount = number | bigint | string;

/** A JSON object's value as read from the server, with `exact`: every number as a string. */
export type Result<T> = T & {
  /** The same value with every amount as its exact decimal string (`"922337203685477.5807"`). */
  readonly exact: Exact<T>;
};

/** A write's result: `replayed` is true when the server answered a repeat of its key. */
export type WriteResult<T> = Result<T> & { readonly replayed: boolean };

/** One page of a list, and `next_cursor` to pass back for the next (null after the last). */
export interface Page<Item, Raw> {
  data: Item[];
  next_cursor: string | null;
  /** The page as the server sent it, every amount as its exact decimal string. */
  readonly exact: Exact<Raw>;
}

export type Account = Result<Schemas["AccountOut"]>;
/** How long an account's credits last at the rate it spends them (see `getRunway`). */
export type Runway = Result<Schemas["RunwayOut"]>;
export type AccountPage = Page<Account, Schemas["AccountPage"]>;
/** A transfer, with the account's `balance` and `available` right after it. */
export type Transfer = WriteResult<Schemas["TransferOut"]>;
/** Transfers of the seed's `getTransactions`: the same as {@link Transfer}. */
export type Transaction = Transfer;
export type TransactionPage = Page<Transfer, Schemas["TransferPage"]>;
export type Hold = WriteResult<Schemas["HoldOut"]>;
export type Capture = WriteResult<Schemas["CaptureOut"]>;
export type Quote = Result<Schemas["QuoteOut"]>;
export type Catalog = Result<Schemas["CatalogOut"]>;
export type Pack = Result<Schemas["PackOut"]>;
export type CheckoutSession = WriteResult<Schemas["CheckoutOut"]>;
export type PortalSession = Result<Schemas["PortalSession"]>;
/** An account's auto top-up: its rule, `state`, saved `card` and consent, `last_attempt`. */
export type AutoTopup = Result<Schemas["AutoTopupOut"]>;
/** A Checkout Session in `setup` mode that saves the card auto top-up charges. */
export type AutoTopupCardSession = WriteResult<Schemas["CardSessionOut"]>;
export type UsageResult = Result<Schemas["UsageResultOut"]>;
export type WebhookEndpoint = WriteResult<Schemas["EndpointOut"]>;
export type WebhookDelivery = Result<Schemas["DeliveryOut"]>;
export type WebhookDeliveryPage = Page<WebhookDelivery, Schemas["DeliveryPage"]>;
/** One admin action as the audit log recorded it: who, what, to what, before and after. */
export type AuditRecord = Result<Schemas["AuditRecordOut"]>;
export type AuditRecordPage = Page<AuditRecord, Schemas["AuditRecordPage"]>;
/** A proxy key as listed: its `hint`, never its secret. */
export type ProxyKey = Result<Schemas["ProxyKeyOut"]>;
/** A proxy key just minted: its `secret` (`cdp_…`) is shown this once. */
export type MintedProxyKey = Result<Schemas["ProxyKeyCreated"]>;
export type ProxyKeyPage = Page<ProxyKey, Schemas["ProxyKeyPage"]>;
/** A wallet's member, with its limits' spend in their current windows. */
export type Member = Result<Schemas["MemberOut"]>;
export type MemberPage = Page<Member, Schemas["MemberPage"]>;
/** A spend limit on a wallet and its current window: `spent`, `held`, `remaining`, `resets_at`. */
export type SpendLimit = Result<Schemas["LimitOut"]>;
export type WebhookEventType = Schemas["EndpointCreate"]["events"][number];
/**
 * A balance checked against its history. `cached` is the seed's name for `stored`: the
 * balance as stored, which `calculated` (the sum of the transfers) should equal.
 */
export type Verification = Result<Schemas["VerificationOut"]> & { readonly cached: number };

/** Metadata kept with a transfer or hold: flat, with string, number, boolean or null values. */
export type Metadata = Record<string, string | number | boolean | null>;

/** One model call's tokens, or a provider's own usage object (`{ model, openai_chat: … }`). */
export type Usage = { model: string } & Partial<Omit<Schemas["UsageIn"], "model">>;

/** What something costs: an amount, a priced feature or meter (× quantity), or model usage. */
export type Price =
  | { amount: Amount; feature?: never; quantity?: never; usage?: never }
  | { feature: string; quantity?: Amount; amount?: never; usage?: never }
  | { usage: Usage; amount?: never; feature?: never; quantity?: never };

/** A priced use to quote (quotes price features and usage, not amounts). */
export type QuoteRequest =
  | { feature: string; quantity?: Amount; usage?: never }
  | { usage: Usage; feature?: never; quantity?: never };

/** One event of {@link CreditsClient.sendUsage}: charged at most once by its `id`. */
export interface UsageEvent {
  id: string;
  account_id: string;
  /** The wallet's member it is spent for: counted in its limits (else `limit_reached`). */
  member?: string;
  feature?: string;
  quantity?: Amount;
  usage?: Usage;
  /** When it happened (RFC 3339 or a Date); default: when received. */
  timestamp?: string | Date;
  metadata?: Metadata;
}

export interface WriteOptions {
  /** Your key for this write (e.g. `chat:${messageId}`); default: one made per call. */
  idempotencyKey?: string;
}

export interface PortalSessionOptions {
  /** A member of the wallet: the link opens that member's page (their limits' allowance). */
  member?: string;
}

export interface ChargeOptions extends WriteOptions {
  description?: string;
  metadata?: Metadata;
  /** The wallet's member it is for ({@link CreditsClient.putMember}): counted in its limits. */
  member?: string;
}

export interface HoldOptions extends ChargeOptions {
  /** Seconds the hold lives (server default 900). */
  expiresIn?: number;
}

/** A capture is for the member its hold was for. */
export interface CaptureOptions extends Omit<ChargeOptions, "member"> {
  /** false: capture a slice and keep the rest held (default true: settle the hold). */
  final?: boolean;
}

export interface GrantOptions extends WriteOptions {
  /** `promotion` (the server's default) or `adjustment`. */
  source?: "promotion" | "adjustment";
  /** When what is left of these credits lapses. */
  expiresAt?: Date | string;
  /** Lower is spent first (0 to 1000). */
  priority?: number;
}

export interface AccountSettings {
  /** Credits the account starts with, once (admin key). */
  initialGrant?: Amount;
  overdraftLimit?: Amount;
  aliases?: string[];
  metadata?: Metadata;
  status?: "active" | "frozen" | "closed";
  lowBalanceThreshold?: Amount;
  /**
   * The IANA time zone (`"Europe/Berlin"`) whose days, weeks and months the account's
   * spend limits count in; null sets it back to UTC (audited).
   */
  timeZone?: string | null;
}

export interface PageOptions {
  /** 1 to 100 (server default 50). */
  limit?: number;
  cursor?: string | null;
}

/** Which webhook deliveries to list. */
export interface DeliveryFilter {
  /** An endpoint's id, or `gateway`. */
  destination?: string;
  status?: "pending" | "delivered" | "dead";
}

/** Which audit records to list: each field matched exactly, made in `[since, until)`. */
export interface AuditFilter {
  /** An account id, a key id, `pricing`, … */
  target?: string;
  /** `key:<id>:<name>`, `cli:<user>`, `stripe`, … */
  actor?: string;
  /** `grant`, `account.frozen`, `key.create`, … */
  action?: string;
  /** From this moment, inclusive (a Date, or RFC 3339 with an offset). */
  since?: Date | string;
  /** Before this moment (a Date, or RFC 3339 with an offset). */
  until?: Date | string;
}

export interface ProxyKeyOptions {
  /**
   * A member of the account ({@link CreditsClient.putMember}; NotFoundError
   * `member_not_found` unless it has it now): every call through the key is that member's,
   * counted in its limits.
   */
  member?: string;
  /** Seconds the key works (at most ten years); default: until revoked. */
  expiresIn?: number;
  /** The most its calls may spend, in credits; default: only the balance limits it. */
  limit?: Amount;
  /** Your own label for it. */
  name?: string;
  /** Requests a minute; default: the server's `[proxy] rate_limit_per_minute`. */
  rateLimit?: number;
}

/** A spend limit to set: at most `amount` credits (0 blocks all spend) per `period`. */
export interface LimitSetting {
  amount: Amount;
  /** A calendar day, week (from Monday) or month in UTC, or the limit's lifetime. */
  period: Schemas["LimitIn"]["period"];
  /** `hard` (the default) refuses what would pass it (LimitReachedError); `soft` does not. */
  mode?: Schemas["LimitIn"]["mode"];
}

export interface MemberSettings {
  /** The name to show; left out, the member has none. */
  displayName?: string;
  /** The member's limits, replacing its set; left out, they stay as they are. */
  limits?: LimitSetting[];
}

export interface CheckoutOptions extends WriteOptions {
  successUrl: string;
  /** Required with the hosted page. */
  cancelUrl?: string;
  uiMode?: "hosted" | "embedded";
}

/**
 * An auto top-up rule: when `available` falls below `threshold`, buy enough to reach
 * `targetBalance`, or one `pack` (exactly one of the two), never more than `monthlyCap`
 * credits in a calendar month (UTC). `enabled: false` turns it off at once (default true).
 */
export type AutoTopupRule = {
  enabled?: boolean;
  threshold: Amount;
  monthlyCap: Amount;
} & ({ targetBalance: Amount; pack?: never } | { pack: string; targetBalance?: never });

export interface CardSessionOptions extends WriteOptions {
  /** Where Stripe sends the customer once the card is saved. */
  successUrl: string;
  /** Where a customer who gives up goes. */
  cancelUrl: string;
}

export interface ClientOptions {
  /** Where creditsd listens, e.g. `http://127.0.0.1:8000`. */
  baseUrl: string;
  /** An API key (`creditsd keys create`); read keys suit browsers, app keys backends. */
  apiKey: string;
  /** Your app's name and version, sent in the User-Agent (e.g. `chat-web/1.4`). */
  app?: string;
  /** The fetch to use (default: the platform's). */
  fetch?: typeof fetch;
  /** Retries after a network error, a 5xx or a 429 (default 2). */
  maxRetries?: number;
  /** Milliseconds one attempt may take (default 10 000). */
  timeoutMs?: number;
  /** The first pause between attempts, doubling with jitter up to 10 s (default 200 ms). */
  backoffMs?: number;
}

/** The longest pause the exponential backoff grows to. */
const MAX_BACKOFF_MS = 10_000;
/** A longer Retry-After than this is not waited out: the error goes to the caller at once. */
const MAX_RETRY_AFTER_SECONDS = 30;

interface ApiCall {
  method: "GET" | "POST" | "PUT" | "DELETE";
  path: string;
  query?: Record<string, string | number | undefined | null>;
  body?: Record<string, unknown>;
  /** A write: sent with an Idempotency-Key (the caller's, else a new one unless keyless). */
  write?: { key: string | undefined; keyless?: boolean };
  /** Not safe to send twice: retried only after a 429, which the server refused unread. */
  once?: boolean;
}

interface Answer<T> {
  plain: T;
  exact: Exact<T>;
  replayed: boolean;
}

/** What a client settled from its {@link ClientOptions}. */
interface Connection {
  baseUrl: string;
  maxRetries: number;
  timeoutMs: number;
  backoffMs: number;
  fetch: typeof fetch;
  headers: Record<string, string>;
}

/**
 * A client for creditsd's HTTP API, for Node ≥ 18, edge runtimes and browsers.
 *
 * Every write sends an `Idempotency-Key` (yours, or one made per call) and is retried with
 * that same key after a network error, a 5xx or a 429, so a retry never charges twice.
 */
export class CreditsClient {
  /** Settled, or the function that gives the options on the first call. */
  #connection: Connection | (() => ClientOptions);

  /**
   * `options`, or a function that gives them on the first call instead: a module can then
   * make its client before creditsd's address is known (`next build` loads route files
   * without the app's runtime environment), and a missing address fails that first call.
   */
  constructor(options: ClientOptions | (() => ClientOptions)) {
    this.#connection = typeof options === "function" ? options : connect(options);
  }

  /** Where creditsd listens, without a trailing slash. */
  get baseUrl(): string {
    return this.#connected().baseUrl;
  }

  /** Retries after a network error, a 5xx or a 429. */
  get maxRetries(): number {
    return this.#connected().maxRetries;
  }

  /** Milliseconds one attempt may take. */
  get timeoutMs(): number {
    return this.#connected().timeoutMs;
  }

  /** The first pause between attempts, in milliseconds. */
  get backoffMs(): number {
    return this.#connected().backoffMs;
  }

  // The seed's surface --------------------------------------------------------------------

  /** The credits the user can spend now (the account's `available`). */
  async getBalance(userId: string): Promise<number> {
    return (await this.getAccount(userId)).available;
  }

  /** The same as {@link getBalance}, exactly, as a decimal string. */
  async getBalanceExact(userId: string): Promise<string> {
    return (await this.getAccount(userId)).exact.available;
  }

  /**
   * Spend `amount` credits for `reason` (kept as the transfer's description). Throws
   * InsufficientCreditsError (402) when the user cannot afford it.
   */
  async deduct(
    userId: string,
    amount: Amount,
    reason: string,
    metadata?: Metadata,
    options: WriteOptions = {},
  ): Promise<Transfer> {
    return this.charge(
      userId,
      { amount },
      { ...options, description: reason, ...optional({ metadata }) },
    );
  }

  /** Give the user `amount` credits for `reason` (an admin key). */
  async add(
    userId: string,
    amount: Amount,
    reason: string,
    metadata?: Metadata,
    options: GrantOptions = {},
  ): Promise<Transfer> {
    return this.grant(userId, amount, { ...options, reason, ...optional({ metadata }) });
  }

  /** One page of the user's transfers, newest first; pass `next_cursor` back for the next. */
  async getTransactions(userId: string, options: PageOptions = {}): Promise<TransactionPage> {
    const answer = await this.#send<Schemas["TransferPage"]>({
      method: "GET",
      path: `${accountPath(userId)}/transactions`,
      query: { limit: options.limit, cursor: options.cursor },
    });
    return page(answer, (item, exact) => result(item, exact, false));
  }

  /** Every transfer of the user, newest first, fetching pages as needed. */
  iterTransactions(userId: string, options: { limit?: number } = {}): AsyncGenerator<Transfer> {
    return everyItem((cursor) => this.getTransactions(userId, { ...options, cursor }));
  }

  /** Create the user's account with `credits` to start with, once (an admin key). */
  async initializeUser(userId: string, credits: Amount): Promise<Account> {
    return this.initializeAccount(userId, { initialGrant: credits });
  }

  /** Check the stored balance against the sum of the user's transfers. */
  async verifyBalance(userId: string): Promise<Verification> {
    return verification(
      await this.#send<Schemas["VerificationOut"]>({
        method: "GET",
        path: `${accountPath(userId)}/verify`,
      }),
    );
  }

  /** Reset a drifted balance from its transfers (an admin key); answers the check made before. */
  async rebuildBalance(userId: string): Promise<Verification> {
    return verification(
      await this.#send<Schemas["VerificationOut"]>({
        method: "POST",
        path: `${accountPath(userId)}/rebuild`,
        write: { key: undefined },
      }),
    );
  }

  // Accounts and transfers ------------------------------------------------------------------

  /** The account's balance, held and available credits, status, aliases and metadata. */
  async getAccount(userId: string): Promise<Account> {
    return plainResult(
      await this.#send<Schemas["AccountOut"]>({ method: "GET", path: accountPath(userId) }),
    );
  }

  /**
   * How long the account's credits last: `burn_per_day` is the larger of the last 24 hours'
   * spend and the mean day of the last 7, a subscription plan's allowance left out of it and
   * of `available`; `runway_days` and `runs_out_at` are null when `reason` says why
   * (`too_little_history`, `no_burn`). NotFoundError for an account that does not exist.
   */
  async getRunway(userId: string): Promise<Runway> {
    return plainResult(
      await this.#send<Schemas["RunwayOut"]>({
        method: "GET",
        path: `${accountPath(userId)}/runway`,
      }),
    );
  }

  /** One page of accounts in id order, those whose id or alias starts with `search` (a read key). */
  async listAccounts(options: PageOptions & { search?: string } = {}): Promise<AccountPage> {
    const answer = await this.#send<Schemas["AccountPage"]>({
      method: "GET",
      path: "/v1/accounts",
      query: { search: options.search, limit: options.limit, cursor: options.cursor },
    });
    return page(answer, (item, exact) => result(item, exact));
  }

  /** Every account that matches, in id order, fetching pages as needed. */
  iterAccounts(options: { limit?: number; search?: string } = {}): AsyncGenerator<Account> {
    return everyItem((cursor) => this.listAccounts({ ...options, cursor }));
  }

  /**
   * Create the account if absent, or apply the settings given (`initialGrant`,
   * `overdraftLimit`, `aliases` and `status` need an admin key).
   */
  async initializeAccount(userId: string, settings: AccountSettings = {}): Promise<Account> {
    const body = {
      initial_grant: optionalAmount(settings.initialGrant, "initialGrant"),
      overdraft_limit: optionalAmount(settings.overdraftLimit, "overdraftLimit"),
      aliases: settings.aliases,
      metadata: settings.metadata,
      status: settings.status,
      low_balance_threshold: optionalAmount(settings.lowBalanceThreshold, "lowBalanceThreshold"),
      time_zone: settings.timeZone,
    };
    const hasSettings = Object.values(body).some((value) => value !== undefined);
    return plainResult(
      await this.#send<Schemas["AccountOut"]>({
        method: "PUT",
        path: accountPath(userId),
        ...optional({ body: hasSettings ? body : undefined }),
        write: { key: undefined },
      }),
    );
  }

  /**
   * Spend credits: `{ amount }`, `{ feature, quantity? }` priced by the server's catalog, or
   * `{ usage }` (a model call's tokens). Throws InsufficientCreditsError (402), or
   * LimitReachedError (402) past a spend limit of the wallet, its `member` or the app.
   */
  async charge(userId: string, price: Price, options: ChargeOptions = {}): Promise<Transfer> {
    return writeResult(
      await this.#send<Schemas["TransferOut"]>({
        method: "POST",
        path: "/v1/charges",
        body: {
          account_id: accountId(userId),
          ...priced(price),
          description: options.description,
          metadata: options.metadata,
          member: options.member,
        },
        write: { key: options.idempotencyKey },
      }),
    );
  }

  /** Give credits (an admin key), into a lot of their own. */
  async grant(
    userId: string,
    amount: Amount,
    options: GrantOptions & { reason?: string; metadata?: Metadata } = {},
  ): Promise<Transfer> {
    return writeResult(
      await this.#send<Schemas["TransferOut"]>({
        method: "POST",
        path: "/v1/grants",
        body: {
          account_id: accountId(userId),
          amount: decimalLiteral(amount),
          source: options.source,
          expires_at: instant(options.expiresAt, "expiresAt"),
          priority: options.priority,
          reason: options.reason,
          metadata: options.metadata,
        },
        write: { key: options.idempotencyKey },
      }),
    );
  }

  /** One transfer by id. */
  async getTransaction(transferId: string): Promise<Transfer> {
    const answer = await this.#send<Schemas["TransferOut"]>({
      method: "GET",
      path: `/v1/transactions/${segment(transferId, "transferId")}`,
    });
    return result(answer.plain, answer.exact, false);
  }

  // Prices --------------------------------------------------------------------------------

  /** The catalog prices come from now (features, meters, models). */
  async getPricing(): Promise<Catalog> {
    return plainResult(
      await this.#send<Schemas["CatalogOut"]>({ method: "GET", path: "/v1/pricing" }),
    );
  }

  /** What a feature (× quantity) or a model call would cost now, without charging. */
  async quote(request: QuoteRequest): Promise<Quote> {
    return plainResult(
      await this.#send<Schemas["QuoteOut"]>({
        method: "POST",
        path: "/v1/quotes",
        body: priced(request),
      }),
    );
  }

  /** Report a batch of up to 1,000 usage events; one result per event, in order. */
  async sendUsage(events: UsageEvent[]): Promise<UsageResult[]> {
    if (!Array.isArray(events)) {
      throw new TypeError("sendUsage takes an array of events; wrap a single event in an array");
    }
    const body = events.map((event, index) => {
      if (typeof event !== "object" || event === null) {
        throw new TypeError(`events[${index}] is an object, not ${describe(event)}`);
      }
      return {
        ...event,
        quantity: optionalAmount(event.quantity, `events[${index}].quantity`),
        timestamp:
          event.timestamp instanceof Date ? event.timestamp.toISOString() : event.timestamp,
      };
    });
    const answer = await this.#send<Schemas["UsageBatchOut"]>({
      method: "POST",
      path: "/v1/usage",
      body: { events: body },
      write: { key: undefined },
    });
    return answer.plain.results.map((item, index) => result(item, answer.exact.results[index]!));
  }

  // Holds ---------------------------------------------------------------------------------

  /** Reserve what `price` costs until captured, released, or `expiresIn` seconds pass. */
  async hold(userId: string, price: Price, options: HoldOptions = {}): Promise<Hold> {
    return writeResult(
      await this.#send<Schemas["HoldOut"]>({
        method: "POST",
        path: "/v1/holds",
        body: {
          account_id: accountId(userId),
          ...priced(price),
          expires_in: optionalSeconds(options.expiresIn),
          description: options.description,
          metadata: options.metadata,
          member: options.member,
        },
        write: { key: options.idempotencyKey },
      }),
    );
  }

  /**
   * Charge the actual cost against a hold; a final capture (the default) gives back the rest.
   * Without a key of yours, a final capture is keyed by its hold on the server, so settling
   * a hold twice never charges twice.
   */
  async capture(holdId: string, price: Price, options: CaptureOptions = {}): Promise<Capture> {
    const final = options.final ?? true;
    if (typeof final !== "boolean") throw new TypeError("final is true or false");
    return writeResult(
      await this.#send<Schemas["CaptureOut"]>({
        method: "POST",
        path: `${holdPath(holdId)}/capture`,
        body: {
          ...priced(price),
          final,
          description: options.description,
          metadata: options.metadata,
        },
        write: { key: options.idempotencyKey, keyless: final },
      }),
    );
  }

  /** Keep an open hold alive for `expiresIn` more seconds from now. */
  async extend(holdId: string, expiresIn: number): Promise<Hold> {
    return writeResult(
      await this.#send<Schemas["HoldOut"]>({
        method: "POST",
        path: `${holdPath(holdId)}/extend`,
        body: { expires_in: optionalSeconds(expiresIn) },
        write: { key: undefined },
      }),
    );
  }

  /** Give back what the hold reserves; releasing twice is harmless. */
  async release(holdId: string): Promise<Hold> {
    return writeResult(
      await this.#send<Schemas["HoldOut"]>({
        method: "POST",
        path: `${holdPath(holdId)}/release`,
        write: { key: undefined },
      }),
    );
  }

  /** The hold as it stands now. */
  async getHold(holdId: string): Promise<Hold> {
    const answer = await this.#send<Schemas["HoldOut"]>({ method: "GET", path: holdPath(holdId) });
    return result(answer.plain, answer.exact, false);
  }

  // Money in --------------------------------------------------------------------------------

  /** The credit packs on sale. */
  async listPacks(): Promise<Pack[]> {
    const answer = await this.#send<Schemas["PackList"]>({ method: "GET", path: "/v1/packs" });
    return answer.plain.data.map((item, index) => result(item, answer.exact.data[index]!));
  }

  /** Start selling `pack` to the user through Stripe Checkout (an app key). */
  async createCheckoutSession(
    userId: string,
    pack: string,
    options: CheckoutOptions,
  ): Promise<CheckoutSession> {
    const uiMode = options?.uiMode ?? "hosted";
    if (uiMode !== "hosted" && uiMode !== "embedded") {
      throw new TypeError(`uiMode is 'hosted' or 'embedded', not ${describe(uiMode)}`);
    }
    if (typeof options?.successUrl !== "string") throw new TypeError("successUrl is required");
    if (uiMode === "hosted" && typeof options.cancelUrl !== "string") {
      throw new TypeError("cancelUrl is required with the hosted page");
    }
    if (typeof pack !== "string" || pack === "") {
      throw new TypeError(`pack is a pack's name (listPacks), not ${describe(pack)}`);
    }
    return writeResult(
      await this.#send<Schemas["CheckoutOut"]>({
        method: "POST",
        path: "/v1/checkout-sessions",
        body: {
          account_id: accountId(userId),
          pack,
          success_url: options.successUrl,
          cancel_url: options.cancelUrl,
          ui_mode: uiMode,
        },
        write: { key: options.idempotencyKey },
      }),
    );
  }

  /**
   * A short-lived link to the user's billing page on creditsd (an app key). With `member`,
   * the link opens that member's page of the wallet `userId` (their limits' allowance); a
   * member the wallet does not have is NotFoundError `member_not_found`.
   */
  async createPortalSession(
    userId: string,
    returnUrl: string,
    options: PortalSessionOptions = {},
  ): Promise<PortalSession> {
    // A link changes nothing on the server: it needs no idempotency key.
    return plainResult(
      await this.#send<Schemas["PortalSession"]>({
        method: "POST",
        path: "/v1/portal-sessions",
        body: {
          account_id: accountId(userId),
          return_url: returnUrl,
          member: options.member,
        },
        write: { key: undefined, keyless: true },
      }),
    );
  }

  // Auto top-up ---------------------------------------------------------------------------------

  /**
   * The account's auto top-up: its rule (in credits), `state` (`off`, `awaiting_card`,
   * `active`, `paused` with `paused_reason`, `needs_action`), the saved `card` and consent,
   * the `last_attempt` and `month_total`. NotFoundError `auto_topup_not_found` when it has none.
   */
  async getAutoTopup(userId: string): Promise<AutoTopup> {
    return plainResult(
      await this.#send<Schemas["AutoTopupOut"]>({
        method: "GET",
        path: `${accountPath(userId)}/auto-topup`,
      }),
    );
  }

  /**
   * Set the account's auto top-up rule (an app key; audited). Nothing is charged until the
   * customer saves a card ({@link createAutoTopupCardSession}). ValidationError
   * (`invalid_auto_topup`, `unknown_pack`, `invalid_amount`) for a rule that cannot work.
   */
  async setAutoTopup(userId: string, rule: AutoTopupRule): Promise<AutoTopup> {
    if (typeof rule !== "object" || rule === null) {
      throw new TypeError(
        `rule is { threshold, targetBalance | pack, monthlyCap }, not ${describe(rule)}`,
      );
    }
    const { enabled = true, threshold, targetBalance, pack, monthlyCap } = rule;
    if (typeof enabled !== "boolean") throw new TypeError("enabled is true or false");
    if ((targetBalance === undefined) === (pack === undefined)) {
      throw new TypeError("give exactly one of targetBalance and pack");
    }
    if (pack !== undefined && (typeof pack !== "string" || pack === "")) {
      throw new TypeError(`pack is a credit pack's name (listPacks), not ${describe(pack)}`);
    }
    return plainResult(
      await this.#send<Schemas["AutoTopupOut"]>({
        method: "PUT",
        path: `${accountPath(userId)}/auto-topup`,
        body: {
          enabled,
          threshold: decimalLiteral(threshold, "threshold"),
          target_balance: optionalAmount(targetBalance, "targetBalance"),
          pack,
          monthly_cap: decimalLiteral(monthlyCap, "monthlyCap"),
        },
        // A PUT of the whole rule is the same however often it is sent: no key needed.
        write: { key: undefined, keyless: true },
      }),
    );
  }

  /**
   * A Stripe Checkout Session in `setup` mode for the customer to save the card auto top-up
   * charges (an app key): send them to its `url`. Set the rule first (NotFoundError
   * `auto_topup_not_found` otherwise); PaymentProviderError when Stripe fails.
   */
  async createAutoTopupCardSession(
    userId: string,
    options: CardSessionOptions,
  ): Promise<AutoTopupCardSession> {
    if (typeof options?.successUrl !== "string") throw new TypeError("successUrl is required");
    if (typeof options.cancelUrl !== "string") throw new TypeError("cancelUrl is required");
    return writeResult(
      await this.#send<Schemas["CardSessionOut"]>({
        method: "POST",
        path: `${accountPath(userId)}/auto-topup/card-session`,
        body: { success_url: options.successUrl, cancel_url: options.cancelUrl },
        write: { key: options.idempotencyKey },
      }),
    );
  }

  // Webhooks (admin key) ----------------------------------------------------------------------

  /** Send signed webhooks of `events` to `url`; the answer's `secret` is shown this once. */
  async createWebhookEndpoint(
    url: string,
    events: WebhookEventType[],
    options: WriteOptions & { description?: string } = {},
  ): Promise<WebhookEndpoint> {
    if (typeof url !== "string" || url === "") {
      throw new TypeError("url is where to send webhooks, e.g. 'https://app.example/hooks'");
    }
    if (!Array.isArray(events)) throw new TypeError("events is an array of event types");
    return writeResult(
      await this.#send<Schemas["EndpointOut"]>({
        method: "POST",
        path: "/v1/webhook-endpoints",
        body: { url, events, description: options.description },
        write: { key: options.idempotencyKey },
      }),
    );
  }

  /** Every endpoint, disabled ones included, their secrets masked. */
  async listWebhookEndpoints(): Promise<WebhookEndpoint[]> {
    const answer = await this.#send<Schemas["EndpointList"]>({
      method: "GET",
      path: "/v1/webhook-endpoints",
    });
    return answer.plain.data.map((item, index) => result(item, answer.exact.data[index]!, false));
  }

  /** Stop sending to an endpoint; its past deliveries stay listed. */
  async disableWebhookEndpoint(endpointId: string): Promise<WebhookEndpoint> {
    return writeResult(
      await this.#send<Schemas["EndpointOut"]>({
        method: "DELETE",
        path: `/v1/webhook-endpoints/${segment(endpointId, "endpointId")}`,
        write: { key: undefined },
      }),
    );
  }

  /** One page of deliveries, newest first, to one `destination` and in one `status`. */
  async listWebhookDeliveries(
    options: PageOptions & DeliveryFilter = {},
  ): Promise<WebhookDeliveryPage> {
    const answer = await this.#send<Schemas["DeliveryPage"]>({
      method: "GET",
      path: "/v1/webhook-deliveries",
      query: {
        destination: options.destination,
        status: options.status,
        limit: options.limit,
        cursor: options.cursor,
      },
    });
    return page(answer, (item, exact) => result(item, exact));
  }

  /** Every delivery that matches, newest first, fetching pages as needed. */
  iterWebhookDeliveries(
    options: DeliveryFilter & { limit?: number } = {},
  ): AsyncGenerator<WebhookDelivery> {
    return everyItem((cursor) => this.listWebhookDeliveries({ ...options, cursor }));
  }

  /** Deliver a message again (a dead one, or one its receiver lost). */
  async retryWebhookDelivery(deliveryId: number): Promise<WebhookDelivery> {
    if (!Number.isSafeInteger(deliveryId)) {
      throw new TypeError(
        `deliveryId is a delivery's whole-number id, not ${describe(deliveryId)}`,
      );
    }
    return plainResult(
      await this.#send<Schemas["DeliveryOut"]>({
        method: "POST",
        path: `/v1/webhook-deliveries/${deliveryId}/retry`,
        write: { key: undefined },
      }),
    );
  }

  // Proxy keys (app key) -------------------------------------------------------------------

  /**
   * A key that pays for one account's calls to `/openai/v1` (an OpenAI SDK's API key),
   * within `limit`, each call its `member`'s when given; its `secret` is shown this once. Not retried and takes no idempotency
   * key: a key whose answer was lost is listed by {@link listProxyKeys}, to be revoked.
   */
  async mintProxyKey(userId: string, options: ProxyKeyOptions = {}): Promise<MintedProxyKey> {
    return plainResult(
      await this.#send<Schemas["ProxyKeyCreated"]>({
        method: "POST",
        path: "/v1/proxy-keys",
        body: {
          account_id: accountId(userId),
          member: options.member,
          expires_in: optionalSeconds(options.expiresIn),
          limit: optionalAmount(options.limit, "limit"),
          name: options.name,
          rate_limit: options.rateLimit,
        },
        write: { key: undefined, keyless: true },
        once: true,
      }),
    );
  }

  /** One page of proxy keys, newest first, revoked and expired ones included. */
  async listProxyKeys(options: PageOptions & { userId?: string } = {}): Promise<ProxyKeyPage> {
    const answer = await this.#send<Schemas["ProxyKeyPage"]>({
      method: "GET",
      path: "/v1/proxy-keys",
      query: {
        account_id: options.userId === undefined ? undefined : accountId(options.userId),
        limit: options.limit,
        cursor: options.cursor,
      },
    });
    return page(answer, (item, exact) => result(item, exact));
  }

  /** Every proxy key (of one account, with `userId`), newest first, fetching pages as needed. */
  iterProxyKeys(options: { limit?: number; userId?: string } = {}): AsyncGenerator<ProxyKey> {
    return everyItem((cursor) => this.listProxyKeys({ ...options, cursor }));
  }

  /** Stop a proxy key paying for new calls (calls it began still settle); twice is harmless. */
  async revokeProxyKey(keyId: string): Promise<ProxyKey> {
    return plainResult(
      await this.#send<Schemas["ProxyKeyOut"]>({
        method: "DELETE",
        path: `/v1/proxy-keys/${segment(keyId, "keyId")}`,
        write: { key: undefined, keyless: true },
      }),
    );
  }

  // Members and spend limits (app key) --------------------------------------------------------

  /** Add a member to the wallet, or update one: its display name, and its limits when given. */
  async putMember(
    walletId: string,
    memberId: string,
    settings: MemberSettings = {},
  ): Promise<Member> {
    return plainResult(
      await this.#send<Schemas["MemberOut"]>({
        method: "PUT",
        path: memberPath(walletId, memberId),
        body: {
          display_name: settings.displayName,
          limits: settings.limits === undefined ? undefined : limitsBody(settings.limits),
        },
        write: { key: undefined, keyless: true },
      }),
    );
  }

  /** One page of the wallet's members by id, each with its limits' spend (a read key). */
  async listMembers(walletId: string, options: PageOptions = {}): Promise<MemberPage> {
    const answer = await this.#send<Schemas["MemberPage"]>({
      method: "GET",
      path: `${accountPath(walletId, "walletId")}/members`,
      query: { limit: options.limit, cursor: options.cursor },
    });
    return page(answer, (item, exact) => result(item, exact));
  }

  /** Every member of the wallet, by id, fetching pages as needed. */
  iterMembers(walletId: string, options: { limit?: number } = {}): AsyncGenerator<Member> {
    return everyItem((cursor) => this.listMembers(walletId, { ...options, cursor }));
  }

  /**
   * Remove a member and its limits; its open holds still settle and its past spend stays
   * its own. One already removed is NotFoundError `member_not_found`.
   */
  async removeMember(walletId: string, memberId: string): Promise<Member> {
    return plainResult(
      await this.#send<Schemas["MemberOut"]>({
        method: "DELETE",
        path: memberPath(walletId, memberId),
        write: { key: undefined, keyless: true },
      }),
    );
  }

  /** Every limit on the wallet (its own, its members', apps' and proxy keys'), a read key. */
  async listLimits(walletId: string): Promise<SpendLimit[]> {
    return spendLimits(
      await this.#send<Schemas["LimitList"]>({
        method: "GET",
        path: `${accountPath(walletId, "walletId")}/limits`,
      }),
    );
  }

  /** Set the limits of all the wallet's spend, whoever spends; answers every limit on it. */
  async setWalletLimits(walletId: string, limits: LimitSetting[]): Promise<SpendLimit[]> {
    return this.#putLimits(`${accountPath(walletId, "walletId")}/limits`, limits);
  }

  /** Set the limits of what one app (an API key's name) spends from the wallet. */
  async setAppLimits(walletId: string, app: string, limits: LimitSetting[]): Promise<SpendLimit[]> {
    return this.#putLimits(
      `${accountPath(walletId, "walletId")}/apps/${segment(app, "app")}/limits`,
      limits,
    );
  }

  /**
   * Set the period limits of what calls through a proxy key spend (beside the lifetime
   * `limit` it was minted with); answers every limit on its account.
   */
  async setProxyKeyLimits(keyId: string, limits: LimitSetting[]): Promise<SpendLimit[]> {
    return this.#putLimits(`/v1/proxy-keys/${segment(keyId, "keyId")}/limits`, limits);
  }

  /** Put one subject's whole set of limits (those left out are removed). */
  async #putLimits(path: string, limits: LimitSetting[]): Promise<SpendLimit[]> {
    return spendLimits(
      await this.#send<Schemas["LimitList"]>({
        method: "PUT",
        path,
        body: { limits: limitsBody(limits) },
        write: { key: undefined, keyless: true },
      }),
    );
  }

  // Audit log (admin key) ---------------------------------------------------------------------

  /** One page of what admins did (grants, freezes, keys, pricing, …), newest first. */
  async listAuditRecords(options: PageOptions & AuditFilter = {}): Promise<AuditRecordPage> {
    const answer = await this.#send<Schemas["AuditRecordPage"]>({
      method: "GET",
      path: "/v1/audit-log",
      query: {
        target: options.target,
        actor: options.actor,
        action: options.action,
        since: instant(options.since, "since"),
        until: instant(options.until, "until"),
        limit: options.limit,
        cursor: options.cursor,
      },
    });
    return page(answer, (item, exact) => result(item, exact));
  }

  /** Every audit record that matches, newest first, fetching pages as needed. */
  iterAuditRecords(options: AuditFilter & { limit?: number } = {}): AsyncGenerator<AuditRecord> {
    return everyItem((cursor) => this.listAuditRecords({ ...options, cursor }));
  }

  // Sending ---------------------------------------------------------------------------------

  #connected(): Connection {
    if (typeof this.#connection === "function") {
      // Until one succeeds, each call asks the function again.
      this.#connection = connect(this.#connection());
    }
    return this.#connection;
  }

  async #send<T>(request: ApiCall): Promise<Answer<T>> {
    const connection = this.#connected();
    const url = new URL(connection.baseUrl + request.path);
    for (const [name, value] of Object.entries(request.query ?? {})) {
      if (value !== undefined && value !== null) url.searchParams.set(name, String(value));
    }
    const headers: Record<string, string> = { ...connection.headers };
    if (request.write !== undefined) {
      const { key, keyless } = request.write;
      if (key !== undefined) {
        if (typeof key !== "string" || key === "") {
          throw new TypeError("idempotencyKey is a non-empty string");
        }
        headers["Idempotency-Key"] = key;
      } else if (!keyless) {
        headers["Idempotency-Key"] = `sdk_${await randomId()}`;
      }
    }
    let body: string | undefined;
    if (request.body !== undefined) {
      body = stringifyExact(request.body);
      headers["Content-Type"] = "application/json";
    }
    const idempotencyKey = headers["Idempotency-Key"];
    for (let attempt = 0; ; attempt += 1) {
      let response: Response;
      let text: string;
      try {
        response = await connection.fetch(url, {
          method: request.method,
          headers,
          ...optional({ body }),
          redirect: "manual",
          signal: AbortSignal.timeout(connection.timeoutMs),
        });
        text = await response.text();
      } catch (cause) {
        if (attempt < connection.maxRetries && !request.once) {
          await sleep(backoff(connection, attempt));
          continue;
        }
        const tries = attempt + 1;
        const error = new TransportError(
          `${request.method} ${url.origin}${request.path}: no answer after ${tries} attempt` +
            `${tries > 1 ? "s" : ""} (${cause instanceof Error ? cause.message : String(cause)})`,
          tries,
          cause,
        );
        error.idempotencyKey = idempotencyKey;
        throw error;
      }
      const retryAfter = retryAfterSeconds(response.headers.get("Retry-After"));
      const retried = response.status === 429 || (response.status >= 500 && !request.once);
      if (retried && attempt < connection.maxRetries) {
        if (retryAfter === undefined || retryAfter <= MAX_RETRY_AFTER_SECONDS) {
          await sleep(retryAfter === undefined ? backoff(connection, attempt) : retryAfter * 1000);
          continue;
        }
      }
      if (!response.ok) throw failure(response, text, retryAfter, idempotencyKey);
      try {
        return {
          plain: JSON.parse(text) as T,
          exact: parseExact(text) as Exact<T>,
          replayed: response.headers.get("Idempotent-Replayed")?.toLowerCase() === "true",
        };
      } catch {
        throw new CreditsError(`the answer to ${request.method} ${request.path} is not JSON`, {
          status: response.status,
          code: "invalid_response",
        });
      }
    }
  }
}

/** The pause before attempt `attempt + 1`. */
function backoff(connection: Connection, attempt: number): number {
  // Exponential, with jitter so that clients failed by one outage do not return in step.
  const ceiling = Math.min(connection.backoffMs * 2 ** attempt, MAX_BACKOFF_MS);
  return ceiling * (0.5 + Math.random() / 2);
}

/** The options checked and settled; a TypeError or RangeError names what is wrong. */
function connect(options: ClientOptions): Connection {
  const { baseUrl, apiKey } = options ?? {};
  if (typeof baseUrl !== "string" || !/^https?:\/\//.test(baseUrl)) {
    throw new TypeError(
      `baseUrl is creditsd's address, e.g. 'http://127.0.0.1:8000', not ${describe(baseUrl)}`,
    );
  }
  if (typeof apiKey !== "string" || apiKey === "") {
    throw new TypeError(
      `apiKey is a creditsd API key (creditsd keys create), not ${describe(apiKey)}`,
    );
  }
  const timeoutMs = wholeNumber(options.timeoutMs ?? 10_000, "timeoutMs");
  if (timeoutMs === 0) throw new RangeError("timeoutMs is more than 0");
  const platformFetch = options.fetch ?? globalThis.fetch;
  if (typeof platformFetch !== "function") {
    throw new TypeError("no fetch here: pass one as the fetch option");
  }
  const agent = `creditsd-typescript/${VERSION}`;
  const headers: Record<string, string> = {
    Authorization: `Bearer ${apiKey}`,
    Accept: "application/json",
  };
  if (!("document" in globalThis)) {
    // Browsers keep the User-Agent header to themselves.
    headers["User-Agent"] = options.app ? `${agent} ${options.app}` : agent;
  }
  return {
    baseUrl: baseUrl.replace(/\/+$/, ""),
    maxRetries: wholeNumber(options.maxRetries ?? 2, "maxRetries"),
    timeoutMs,
    backoffMs: wholeNumber(options.backoffMs ?? 200, "backoffMs"),
    fetch: platformFetch,
    headers,
  };
}

/** The seed's name for the client. */
export { CreditsClient as CreditsSDK };

function failure(
  response: Response,
  text: string,
  retryAfter: number | undefined,
  idempotencyKey: string | undefined,
): CreditsError {
  let plain: unknown;
  let exact: unknown;
  try {
    plain = JSON.parse(text);
    exact = parseExact(text);
  } catch {
    // Not JSON: a proxy or load balancer answered; errorFor names it by its status.
  }
  const error = errorFor(response.status, response.statusText, plain, exact);
  error.idempotencyKey = idempotencyKey;
  if (error instanceof RateLimitError) error.retryAfter = retryAfter;
  return error;
}

/** The Retry-After header in seconds (given as seconds or as an HTTP date), if any. */
function retryAfterSeconds(value: string | null): number | undefined {
  if (value === null || value.trim() === "") return undefined;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(seconds, 0);
  const when = Date.parse(value);
  return Number.isNaN(when) ? undefined : Math.max((when - Date.now()) / 1000, 0);
}

function sleep(milliseconds: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, milliseconds));
}

function result<T>(plain: T, exact: Exact<T>): Result<T>;
function result<T>(plain: T, exact: Exact<T>, replayed: boolean): WriteResult<T>;
function result<T>(plain: T, exact: Exact<T>, replayed?: boolean): Result<T> {
  // Not enumerable: `Response.json(transfer)` sends the server's fields, as they came.
  Object.defineProperty(plain, "exact", { value: exact, enumerable: false });
  if (replayed !== undefined)
    Object.defineProperty(plain, "replayed", { value: replayed, enumerable: false });
  return plain as Result<T>;
}

function plainResult<T>(answer: Answer<T>): Result<T> {
  return result(answer.plain, answer.exact);
}

function writeResult<T>(answer: Answer<T>): WriteResult<T> {
  return result(answer.plain, answer.exact, answer.replayed);
}

function page<Raw extends { data: unknown[]; next_cursor: string | null }, Out>(
  answer: Answer<Raw>,
  wrap: (item: Raw["data"][number], exact: Exact<Raw["data"][number]>) => Out,
): Page<Out, Raw> {
  const exactItems = (answer.exact as { data: Exact<Raw["data"][number]>[] }).data;
  const data = answer.plain.data.map((item, index) => wrap(item, exactItems[index]!));
  const plain = { data, next_cursor: answer.plain.next_cursor };
  Object.defineProperty(plain, "exact", { value: answer.exact, enumerable: false });
  return plain as Page<Out, Raw>;
}

/** Every item of every page, fetching the next while `next_cursor` is not null. */
async function* everyItem<T>(
  pageAt: (cursor: string | null) => Promise<Page<T, unknown>>,
): AsyncGenerator<T> {
  let cursor: string | null = null;
  do {
    const current: Page<T, unknown> = await pageAt(cursor);
    yield* current.data;
    cursor = current.next_cursor;
  } while (cursor !== null);
}

function verification(answer: Answer<Schemas["VerificationOut"]>): Verification {
  Object.defineProperty(answer.plain, "cached", { value: answer.plain.stored, enumerable: false });
  return plainResult(answer) as Verification;
}

/** The body fields of a price: exactly one of amount, feature (+ quantity) or usage. */
function priced(price: Price | QuoteRequest): Record<string, unknown> {
  if (typeof price !== "object" || price === null) {
    throw new TypeError(
      `give what it costs: { amount }, { feature, quantity? } or { usage }, not ${describe(price)}`,
    );
  }
  const given = (["amount", "feature", "usage"] as const).filter(
    (name) => (price as Record<string, unknown>)[name] !== undefined,
  );
  if (given.length !== 1) {
    throw new TypeError(
      `give exactly one of amount, feature or usage${given.length ? ` (got ${given.join(", ")})` : ""}`,
    );
  }
  const { amount, feature, quantity, usage } = price as Record<string, unknown>;
  if (quantity !== undefined && feature === undefined)
    throw new TypeError("quantity goes with feature");
  if (amount !== undefined) return { amount: decimalLiteral(amount) };
  if (feature !== undefined) {
    if (typeof feature !== "string") {
      throw new TypeError(
        `feature is a feature's name, e.g. 'chat_message', not ${describe(feature)}`,
      );
    }
    return { feature, quantity: optionalAmount(quantity, "quantity") };
  }
  if (typeof usage !== "object" || usage === null || Array.isArray(usage)) {
    throw new TypeError(`usage is an object { model, input_tokens, … }, not ${describe(usage)}`);
  }
  return { usage };
}

/** The `limits` of a PUT: each amount checked and kept exact. */
function limitsBody(limits: unknown): Record<string, unknown>[] {
  if (!Array.isArray(limits)) {
    throw new TypeError(`limits is an array of { amount, period, mode? }, not ${describe(limits)}`);
  }
  return limits.map((limit: unknown, index) => {
    if (typeof limit !== "object" || limit === null) {
      throw new TypeError(`limits[${index}] is an object, not ${describe(limit)}`);
    }
    const { amount, period, mode } = limit as Record<string, unknown>;
    return { amount: decimalLiteral(amount, `limits[${index}].amount`), period, mode };
  });
}

function spendLimits(answer: Answer<Schemas["LimitList"]>): SpendLimit[] {
  return answer.plain.data.map((item, index) => result(item, answer.exact.data[index]!));
}

function optionalAmount(value: unknown, name: string): JsonNumber | undefined {
  return value === undefined ? undefined : decimalLiteral(value, name);
}

function optionalSeconds(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number" || !Number.isSafeInteger(value)) {
    throw new TypeError(`expiresIn is a whole number of seconds, not ${describe(value)}`);
  }
  return value;
}

/** A moment as the server reads it: a Date as RFC 3339, a string as given. */
function instant(value: unknown, name: string): string | undefined {
  if (value === undefined || typeof value === "string") return value;
  if (value instanceof Date && !Number.isNaN(value.getTime())) return value.toISOString();
  throw new TypeError(`${name} is a Date or an RFC 3339 string, not ${describe(value)}`);
}

function wholeNumber(value: unknown, name: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`${name} is a whole number, 0 or more, not ${describe(value)}`);
  }
  return value;
}

function accountId(userId: unknown, name = "userId"): string {
  if (typeof userId !== "string" || userId === "") {
    throw new TypeError(`${name} is an account id such as 'user_2abc', not ${describe(userId)}`);
  }
  return userId;
}

function segment(value: unknown, name: string): string {
  if (typeof value !== "string" || value === "") {
    throw new TypeError(`${name} is an id, not ${describe(value)}`);
  }
  return encodeURIComponent(value);
}

function accountPath(userId: string, name?: string): string {
  return `/v1/accounts/${encodeURIComponent(accountId(userId, name))}`;
}

function memberPath(walletId: string, memberId: string): string {
  return `${accountPath(walletId, "walletId")}/members/${segment(memberId, "memberId")}`;
}

function holdPath(holdId: string): string {
  return `/v1/holds/${segment(holdId, "holdId")}`;
}

/** The entries whose value is defined (for exactOptionalPropertyTypes). */
function optional<T extends Record<string, unknown>>(
  fields: T,
): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(
    Object.entries(fields).filter(([, value]) => value !== undefined),
  ) as never;
}
