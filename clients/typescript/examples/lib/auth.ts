// lib/auth.ts: the signed-in user's id. With Clerk: `const { userId } = await auth();`.
// Here a stand-in, so that the examples type-check without an identity provider installed.
export async function currentUserId(request?: Request): Promise<string | null> {
  return request?.headers.get("x-user-id") ?? null;
}

export async function isAdmin(userId: string): Promise<boolean> {
  return userId === process.env.ADMIN_USER_ID;
}
