// lib/credits.ts, as the README writes it: the options are read on the first call, so
// `next build` runs without CREDITSD_URL and CREDITSD_KEY.
import { CreditsClient, PricingEngine } from "@creditsd/client";

export const credits = new CreditsClient(() => ({
  baseUrl: process.env.CREDITSD_URL!,
  apiKey: process.env.CREDITSD_KEY!,
  app: "next-app.test",
}));
export const pricing = new PricingEngine(credits);
