// app/api/credits/[action]/route.ts: what the browser may ask for the signed-in user:
// GET balance, GET packs, POST quote { feature, quantity }, POST checkout { pack }.
import { createCreditsRoutes } from "@creditsd/client/next";
import { currentUserId } from "../../../../lib/auth.js";
import { credits } from "../../../../lib/credits.js";

export const { GET, POST } = createCreditsRoutes({
  client: credits,
  getUserId: (request) => currentUserId(request),
  checkout: {
    successUrl: "https://app.example/credits?paid=1",
    cancelUrl: "https://app.example/credits",
  },
  // Only behind a proxy that passes on neither Host nor X-Forwarded-Host: the app's address.
  siteUrl: process.env.SITE_URL,
});
