// lib/credits.ts: one client per app, each with its own app key (creditsd keys create
// --scope app --name chat), all sharing the user's one balance.
import { CreditsClient, PricingEngine } from "@creditsd/client";

export const credits = new CreditsClient({
  baseUrl: process.env.CREDITSD_URL ?? "http://127.0.0.1:8000",
  apiKey: process.env.CREDITSD_KEY ?? "",
  app: "chat.example",
});

export const pricing = new PricingEngine(credits);
