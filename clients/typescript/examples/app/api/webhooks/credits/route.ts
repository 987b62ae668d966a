// app/api/webhooks/credits/route.ts: creditsd's signed webhooks (register this URL with
// createWebhookEndpoint and keep the whsec_ secret it returns in CREDITSD_WEBHOOK_SECRET).
import { createWebhookHandler } from "@creditsd/client/next";

declare function notifyUser(accountId: string, message: string): Promise<void>;

export const POST = createWebhookHandler({
  secret: process.env.CREDITSD_WEBHOOK_SECRET ?? "",
  onEvent: async (event) => {
    // A message may arrive more than once: event.id tells a repeat.
    if (event.type === "balance.low" && typeof event.data.account_id === "string") {
      await notifyUser(event.data.account_id, "Your credits are running low");
    }
  },
});
