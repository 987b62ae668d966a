// app/api/canvas/generate/route.ts: the seed's deduct(userId, amount, reason, metadata),
// with the cost read from the live catalog instead of a constant in the app.
import { currentUserId } from "../../../../lib/auth.js";
import { credits, pricing } from "../../../../lib/credits.js";
import { paymentRequired } from "../../../../lib/respond.js";

declare function generateCanvas(prompt: string): Promise<{ url: string }>;

export async function POST(req: Request): Promise<Response> {
  const userId = await currentUserId(req);
  if (!userId) return Response.json({ error: "Unauthorized" }, { status: 401 });
  const { complexity, prompt } = (await req.json()) as {
    complexity: "high" | "low";
    prompt: string;
  };
  const feature = complexity === "high" ? "canvas_generation_complex" : "canvas_generation_simple";
  try {
    const cost = await pricing.calculateCostExact(feature);
    await credits.deduct(userId, cost, "canvas_generation", { app: "canvas.example", complexity });
    return Response.json({ canvas: await generateCanvas(prompt) });
  } catch (error) {
    return paymentRequired(error);
  }
}
