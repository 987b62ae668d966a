// lib/respond.ts: a 402 the browser can show for a charge the user cannot afford; any
// other error goes on to Next.js.
import { InsufficientCreditsError } from "@creditsd/client";

export function paymentRequired(error: unknown): Response {
  if (error instanceof InsufficientCreditsError) {
    return Response.json(
      { error: "Insufficient credits", required: error.required, available: error.available },
      { status: 402 },
    );
  }
  throw error;
}
