// app/api/credits/history/route.ts: the signed-in user's transfers, a page at a time.
import type { Transaction } from "@creditsd/client";
import { currentUserId } from "../../../../lib/auth.js";
import { credits } from "../../../../lib/credits.js";

export async function GET(req: Request): Promise<Response> {
  const userId = await currentUserId(req);
  if (!userId) return Response.json({ error: "Unauthorized" }, { status: 401 });
  const { searchParams } = new URL(req.url);
  const limit = Math.min(
    Math.max(Number.parseInt(searchParams.get("limit") ?? "50", 10) || 50, 1),
    100,
  );
  const page = await credits.getTransactions(userId, { limit, cursor: searchParams.get("cursor") });
  const transactions: Transaction[] = page.data;
  return Response.json({ transactions, next_cursor: page.next_cursor });
}
