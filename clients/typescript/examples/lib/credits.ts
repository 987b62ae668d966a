// lib/credits.ts: one client per app, each with its own app key (creditsd keys create
// --scope app --name chat), all sharing the user's one balance. The options are a function,
// read on the first call: `next build` loads this file without CREDITSD_URL set.
import { CreditsClient, PricingEngine } from "@creditsd/client";

export const credits = new CreditsClient(() => ({
  baseUrl: process.env.CREDITSD_URL!,
  apiKey: process.env.CREDITSD_KEY!,
  app: "chat.example",
}));

export const pricing = new PricingEngine(credits);
