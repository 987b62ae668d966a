// app/api/admin/credits/grant/route.ts: an admin gives credits (this app's key must be an
// admin key). The amount goes to creditsd exactly as the admin typed it.
import { currentUserId, isAdmin } from "../../../../../lib/auth.js";
import { CreditsClient } from "@creditsd/client";

const adminCredits = new CreditsClient(() => ({
  baseUrl: process.env.CREDITSD_URL!,
  apiKey: process.env.CREDITSD_ADMIN_KEY!,
}));

export async function POST(req: Request): Promise<Response> {
  const userId = await currentUserId(req);
  if (!userId) return Response.json({ error: "Unauthorized" }, { status: 401 });
  if (!(await isAdmin(userId))) return Response.json({ error: "Forbidden" }, { status: 403 });
  const { targetUserId, amount, reason, requestId } = (await req.json()) as {
    targetUserId: string;
    amount: string;
    reason: string;
    requestId: string;
  };
  const result = await adminCredits.add(
    targetUserId,
    amount,
    reason,
    { granted_by: userId, admin_action: true },
    { idempotencyKey: `grant:${requestId}` },
  );
  return Response.json(result);
}
