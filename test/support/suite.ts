/**
 * What the harness started, as tests see it, and the clients to reach it.
 *
 * Tests use the same adapters the functions use (firebase-admin from the
 * functions package), pointed at the emulators by the harness's environment.
 */
import { randomUUID } from "node:crypto";
import path from "node:path";
import { emulatorIdToken as idToken } from "../../scripts/harness/tokens";

export const ROOT = path.resolve(__dirname, "..", "..");
export const FUNCTIONS_DIR = path.join(ROOT, "functions");

export function env(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set: run this tier through the harness (npm test -- <tier>)`);
  return value;
}

export const suite = {
  get projectId() {
    return env("GCLOUD_PROJECT");
  },
  get functionsOrigin() {
    return env("FUNCTIONS_ORIGIN");
  },
  get functionsBaseUrl() {
    return env("FUNCTIONS_BASE_URL");
  },
  get hostingOrigin() {
    return env("HOSTING_ORIGIN");
  },
  get controlUrl() {
    return env("HARNESS_CONTROL_URL");
  },
  get redisUrl() {
    return env("REDIS_URL");
  },
  get mongoUri() {
    return env("MONGODB_URI");
  },
};

/** A fresh user id, so tests never share state. */
export function newUid(prefix = "user"): string {
  return `${prefix}-${randomUUID().slice(0, 12)}`;
}

/** An ID token the Auth emulator accepts for `uid` (see scripts/harness/tokens.ts). */
export function emulatorIdToken(uid: string, claims: Record<string, unknown> = {}): string {
  return idToken(suite.projectId, uid, claims);
}

export interface CallResult<T> {
  status: number;
  result?: T;
  error?: { status: string; message: string; details?: unknown };
}

/** Calls a callable function over its HTTP protocol, as a client SDK would. */
export async function callFunction<T = unknown>(
  name: string,
  data: unknown,
  auth?: { uid: string; claims?: Record<string, unknown> },
  options: { timeoutMs?: number } = {},
): Promise<CallResult<T>> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (auth) headers.authorization = `Bearer ${emulatorIdToken(auth.uid, auth.claims)}`;
  const response = await fetch(`${suite.functionsBaseUrl}/${name}`, {
    method: "POST",
    headers,
    body: JSON.stringify({ data }),
    signal: AbortSignal.timeout(options.timeoutMs ?? 60_000),
  });
  const body = (await response.json()) as { result?: T; error?: CallResult<T>["error"] };
  return { status: response.status, result: body.result, error: body.error };
}

/** Stops or starts a service the harness owns. */
export async function control(action: "redis/stop" | "redis/start"): Promise<void> {
  const response = await fetch(`${suite.controlUrl}/${action}`, {
    method: "POST",
    signal: AbortSignal.timeout(20_000),
  });
  if (!response.ok) throw new Error(`harness control ${action}: HTTP ${response.status} ${await response.text()}`);
}

export { waitFor, http } from "../../scripts/harness/net";
export { deliver, fireSchedule, firestoreWrittenEvent, rtdbWrittenEvent } from "../../scripts/harness/cloudevents";
