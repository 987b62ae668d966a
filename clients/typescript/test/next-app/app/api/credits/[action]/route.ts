// app/api/credits/[action]/route.ts, as the README writes it.
import { createCreditsRoutes } from "@creditsd/client/next";
import { credits } from "@/lib/credits";
import { userId } from "@/lib/session";

export const { GET, POST } = createCreditsRoutes({
  client: credits,
  getUserId: userId,
  siteUrl: process.env.SITE_URL,
});
