// One chat call through creditsd's /openai/v1, made as a Vercel AI SDK user makes it:
// the OpenRouter provider pointed at creditsd, `generateText` or `streamText`.
//
//   CREDITSD_URL=http://127.0.0.1:8000 CREDITSD_KEY=ck_… CREDITSD_ACCOUNT=user_1 \
//     node call.mjs openai/gpt-4o-mini stream-usage
//
// Modes: "generate" (not streamed), "stream" (the provider's defaults), "stream-usage"
// (the provider set to ask for usage, `usage: {include: true}`). Prints one JSON line:
// {text, usage, providerMetadata, finishReason, error} where error is null or
// {name, message, statusCode}.
import { createOpenRouter } from "@openrouter/ai-sdk-provider";
import { generateText, streamText } from "ai";

const [model, mode] = process.argv.slice(2);
const openrouter = createOpenRouter({
  baseURL: `${process.env.CREDITSD_URL}/openai/v1`,
  apiKey: process.env.CREDITSD_KEY,
  headers: { "X-Creditsd-Account": process.env.CREDITSD_ACCOUNT },
  appName: "Example App", // OpenRouter's attribution headers, which creditsd passes on
  appUrl: "https://app.example",
});
const settings = mode === "stream-usage" ? { usage: { include: true } } : {};
const call = {
  model: openrouter(model, settings),
  prompt: "Hi",
  maxOutputTokens: 1000,
  maxRetries: 0, // a retry would be a second call, billed on its own
};

const described = (error) =>
  error == null
    ? null
    : { name: error.name, message: error.message, statusCode: error.statusCode ?? null };

const report = { text: "", usage: null, providerMetadata: null, finishReason: null, error: null };
try {
  if (mode === "generate") {
    const result = await generateText(call);
    Object.assign(report, {
      text: result.text,
      usage: result.usage,
      providerMetadata: result.providerMetadata,
      finishReason: result.finishReason,
    });
  } else {
    const result = streamText({ ...call, onError: ({ error }) => (report.error = described(error)) });
    for await (const piece of result.textStream) {
      report.text += piece;
    }
    // Their promises reject when the stream gave no step to report on.
    report.usage = await result.usage.catch(() => null);
    report.providerMetadata = await result.providerMetadata.catch(() => null);
    report.finishReason = await result.finishReason.catch(() => null);
  }
} catch (error) {
  report.error = described(error);
}
console.log(JSON.stringify(report));
