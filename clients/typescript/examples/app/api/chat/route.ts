// app/api/chat/route.ts: charge a chat message (priced by creditsd's catalog) before
// answering it; a resent message is charged once, by its id.
import { currentUserId } from "../../../lib/auth.js";
import { credits } from "../../../lib/credits.js";
import { paymentRequired } from "../../../lib/respond.js";

declare function processChatMessage(message: {
  id: string;
  text: string;
}): Promise<{ reply: string }>;

export async function POST(req: Request): Promise<Response> {
  const userId = await currentUserId(req);
  if (!userId) return Response.json({ error: "Unauthorized" }, { status: 401 });
  const message = (await req.json()) as { id: string; text: string };
  try {
    const result = await credits.charge(
      userId,
      { feature: "chat_message" },
      { idempotencyKey: `chat:${message.id}`, metadata: { model: "claude-sonnet-4" } },
    );
    const response = await processChatMessage(message);
    return Response.json({ ...response, credits_remaining: result.balance });
  } catch (error) {
    return paymentRequired(error);
  }
}
