// The balance from a route in the edge runtime: with Cache Components on, Next.js refuses
// `export const runtime` in the App Router, and the Pages Router still offers it.
import { credits } from "@/lib/credits";
import { userId } from "@/lib/session";

export const config = { runtime: "edge" };

export default async function handler(request: Request): Promise<Response> {
  const user = userId(request);
  if (user === null) return Response.json({ error: "Unauthorized" }, { status: 401 });
  const runtime = typeof (globalThis as { EdgeRuntime?: unknown }).EdgeRuntime === "string";
  return Response.json({
    balance: await credits.getBalance(user),
    runtime: runtime ? "edge" : "nodejs",
  });
}
