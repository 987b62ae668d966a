/** The seed's PricingEngine, on creditsd's live catalog instead of prices in the app. */

import type { Amount, Catalog, CreditsClient } from "./client.js";

/**
 * Prices features and meters by the catalog the server charges with now. The server does
 * the arithmetic (exact decimals, its rounding, its catalog version), so a cost shown to a
 * user is what a charge of the same feature and quantity takes.
 */
export class PricingEngine {
  readonly #client: CreditsClient;
  readonly #maxAgeMs: number;
  #catalog: { value: Promise<Catalog>; at: number } | undefined;

  /** `maxAgeMs`: how long {@link catalog} trusts the catalog it read (default 5 s). */
  constructor(client: CreditsClient, options: { maxAgeMs?: number } = {}) {
    this.#client = client;
    this.#maxAgeMs = options.maxAgeMs ?? 5_000;
  }

  /** What `quantity` (uses of a feature, or seconds, GPU hours… of a meter) costs, in credits. */
  async calculateCost(name: string, quantity: Amount = 1): Promise<number> {
    return (await this.#client.quote({ feature: name, quantity })).amount;
  }

  /** The same as {@link calculateCost}, exactly, as a decimal string. */
  async calculateCostExact(name: string, quantity: Amount = 1): Promise<string> {
    return (await this.#client.quote({ feature: name, quantity })).exact.amount;
  }

  /** The catalog (features, meters, models and their prices), read again after `maxAgeMs`. */
  async catalog(): Promise<Catalog> {
    const now = Date.now();
    if (this.#catalog === undefined || now - this.#catalog.at > this.#maxAgeMs) {
      const value = this.#client.getPricing();
      this.#catalog = { value, at: now };
      value.catch(() => {
        if (this.#catalog?.value === value) this.#catalog = undefined;
      });
    }
    return this.#catalog.value;
  }

  /** A feature's or meter's price per use or unit, exactly, or undefined if it is not sold. */
  async unitPrice(name: string): Promise<{ price: string; unit: string } | undefined> {
    const { exact } = await this.catalog();
    const feature = exact.features[name];
    if (feature !== undefined) return { price: feature.price, unit: "use" };
    const meter = exact.meters[name];
    return meter === undefined ? undefined : { price: meter.price, unit: meter.unit };
  }
}
