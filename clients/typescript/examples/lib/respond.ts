// lib/respond.ts: a 402 the browser can show for a charge the user cannot afford, or that a
// spend limit of their team does not allow (with when it resets); any other error goes on
// to Next.js.
import { InsufficientCreditsError, LimitReachedError } from "@creditsd/client";

export function paymentRequired(error: unknown): Response {
  if (error instanceof InsufficientCreditsError) {
    return Response.json(
      { error: "Insufficient credits", required: error.required, available: error.available },
      { status: 402 },
    );
  }
  if (error instanceof LimitReachedError) {
    return Response.json(
      {
        error: "Spend limit reached",
        limit: error.limit,
        period: error.period,
        remaining: error.remaining,
        resets_at: error.resetsAt,
      },
      { status: 402 },
    );
  }
  throw error;
}
