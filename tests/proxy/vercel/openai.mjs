// One call through creditsd's /openai/v1, made as a Vercel AI SDK user makes it with the
// default OpenAI provider: `openai(id)` calls the Responses API, `openai.embedding(id)`
// the Embeddings API.
//
//   CREDITSD_URL=http://127.0.0.1:8000 CREDITSD_KEY=ck_… CREDITSD_ACCOUNT=user_1 \
//     node openai.mjs openai/gpt-4o-mini stream
//
// Modes: "generate" (`generateText`), "stream" (`streamText`), "embed" (`embed`). Prints one
// JSON line: {text, usage, providerMetadata, finishReason, embedding, error} where error is
// null or {name, message, statusCode}.
import { createOpenAI } from "@ai-sdk/openai";
import { embed, generateText, streamText } from "ai";

const [model, mode] = process.argv.slice(2);
const openai = createOpenAI({
  baseURL: `${process.env.CREDITSD_URL}/openai/v1`,
  apiKey: process.env.CREDITSD_KEY,
  headers: { "X-Creditsd-Account": process.env.CREDITSD_ACCOUNT },
});
const call = {
  model: openai(model),
  prompt: "Hi",
  maxOutputTokens: 1000,
  maxRetries: 0, // a retry would be a second call, billed on its own
};

const described = (error) =>
  error == null
    ? null
    : { name: error.name, message: error.message, statusCode: error.statusCode ?? null };

const report = {
  text: "",
  usage: null,
  providerMetadata: null,
  finishReason: null,
  embedding: null,
  error: null,
};
try {
  if (mode === "embed") {
    const result = await embed({ model: openai.embedding(model), value: "Hi", maxRetries: 0 });
    Object.assign(report, { embedding: result.embedding, usage: result.usage });
  } else if (mode === "generate") {
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
