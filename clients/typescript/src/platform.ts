/** What the client needs from the platform beyond fetch: Web Crypto. */

/** Web Crypto: the global one (Node ≥ 19, edge runtimes, browsers), else Node 18's module. */
export async function webCrypto(): Promise<Crypto> {
  if (globalThis.crypto?.subtle !== undefined) return globalThis.crypto;
  const name = "node:crypto"; // a variable, so that bundlers for the edge leave it alone
  const module = (await import(/* webpackIgnore: true */ name)) as { webcrypto: Crypto };
  return module.webcrypto;
}

/** A random id for an idempotency key: 128 bits as hex. */
export async function randomId(): Promise<string> {
  const bytes = (await webCrypto()).getRandomValues(new Uint8Array(16));
  return Array.from(bytes, (byte) => byte.toString(16).padStart(2, "0")).join("");
}
