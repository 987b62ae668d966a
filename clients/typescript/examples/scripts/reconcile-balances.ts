// scripts/reconcile-balances.ts: check every balance against its history, and rebuild the
// ones that drifted (an admin key). `creditsd reconcile --fix` does the same on the server.
import { CreditsSDK } from "@creditsd/client";

const credits = new CreditsSDK({
  baseUrl: process.env.CREDITSD_URL ?? "http://127.0.0.1:8000",
  apiKey: process.env.CREDITSD_ADMIN_KEY ?? "",
});

export async function reconcile(
  userIds: string[],
): Promise<{ verified: number; fixed: number; errors: number }> {
  let verified = 0;
  let fixed = 0;
  let errors = 0;
  for (const userId of userIds) {
    try {
      const verification = await credits.verifyBalance(userId);
      if (verification.valid) {
        verified += 1;
      } else {
        console.log(
          `Fixing ${userId}: ${verification.exact.stored} → ${verification.exact.calculated}`,
        );
        await credits.rebuildBalance(userId);
        fixed += 1;
      }
    } catch (error) {
      console.error(`Error reconciling ${userId}:`, error);
      errors += 1;
    }
  }
  return { verified, fixed, errors };
}
