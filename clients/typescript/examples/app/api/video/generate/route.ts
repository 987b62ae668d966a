// app/api/video/generate/route.ts: a metered job. Hold the estimate, so the credits are
// there when the video is done; capture what it actually took; release on failure.
import { InsufficientCreditsError } from "@creditsd/client";
import { currentUserId } from "../../../../lib/auth.js";
import { credits } from "../../../../lib/credits.js";

declare function generateVideo(options: { duration: number; resolution: string }): Promise<{
  url: string;
  seconds: number;
}>;

export async function POST(req: Request): Promise<Response> {
  const userId = await currentUserId(req);
  if (!userId) return Response.json({ error: "Unauthorized" }, { status: 401 });
  const { duration, resolution } = (await req.json()) as { duration: number; resolution: string };

  let holdId: string;
  try {
    const hold = await credits.hold(
      userId,
      { feature: "video_generation", quantity: duration },
      { expiresIn: 600, metadata: { app: "studio.example", resolution } },
    );
    holdId = hold.id;
  } catch (error) {
    if (error instanceof InsufficientCreditsError) {
      return Response.json(
        {
          error: "Insufficient credits",
          estimated_cost: error.required,
          available: error.available,
        },
        { status: 402 },
      );
    }
    throw error;
  }
  try {
    const video = await generateVideo({ duration, resolution });
    const done = await credits.capture(holdId, {
      feature: "video_generation",
      quantity: video.seconds,
    });
    return Response.json({
      video,
      charged: done.transfer.amount,
      credits_remaining: done.transfer.balance,
    });
  } catch (error) {
    await credits.release(holdId);
    throw error;
  }
}
