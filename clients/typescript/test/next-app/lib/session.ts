// The signed-in user: a stand-in for Clerk's auth(), the `user` cookie the test sends.
export function userId(request: Request): string | null {
  const cookies = request.headers.get("cookie") ?? "";
  return /(?:^|;\s*)user=([^;]+)/.exec(cookies)?.[1] ?? null;
}
