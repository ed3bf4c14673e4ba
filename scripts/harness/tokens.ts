/**
 * ID tokens the Auth emulator accepts: unsigned ("alg": "none"), as the
 * emulator's own tokens are. firebase-admin verifies such tokens only when
 * FIREBASE_AUTH_EMULATOR_HOST is set, which the functions emulator does.
 */
export function emulatorIdToken(projectId: string, uid: string, claims: Record<string, unknown> = {}): string {
  const now = Math.floor(Date.now() / 1000);
  const header = { alg: "none", typ: "JWT" };
  const payload = {
    iss: `https://securetoken.google.com/${projectId}`,
    aud: projectId,
    auth_time: now,
    user_id: uid,
    sub: uid,
    iat: now,
    exp: now + 3600,
    firebase: { identities: {}, sign_in_provider: "custom" },
    ...claims,
  };
  const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString("base64url");
  return `${encode(header)}.${encode(payload)}.`;
}
