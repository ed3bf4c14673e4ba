/**
 * Delivering events to the functions emulator as CloudEvents.
 *
 * The functions emulator accepts a CloudEvent for any loaded trigger at
 * POST /functions/projects/{project}/triggers/{key}. That is how the harness
 * fires RTDB triggers (no official RTDB emulator here) and schedules (no
 * emulator fires them), and how tests deliver duplicates and out-of-order events.
 */
import { randomUUID } from "node:crypto";
import { PROJECT_ID, REGION } from "./services";

export interface CloudEvent {
  specversion: "1.0";
  id: string;
  source: string;
  type: string;
  time: string;
  subject?: string;
  datacontenttype?: string;
  data: unknown;
  [extension: string]: unknown;
}

const keyCache = new Map<string, string>();

/**
 * The emulator's key for a function: `{region}-{name}` for HTTP-like triggers
 * (schedules), `{region}-{name}-{generation}` for event triggers, where the
 * generation grows each time the emulator reloads the code. A wrong key gets a
 * 404 that lists the valid ones, so the key is learnt from that.
 */
async function triggerKey(functionsOrigin: string, name: string, refresh: boolean): Promise<string> {
  const id = `${REGION}-${name}`;
  const cached = keyCache.get(id);
  if (cached && !refresh) return cached;
  const response = await fetch(`${functionsOrigin}/functions/projects/${PROJECT_ID}/triggers/__list__`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  const text = await response.text();
  const valid = (/valid functions are: (.*)$/s.exec(text)?.[1] ?? "").split(",").map((key) => key.trim());
  const candidates = valid.filter((key) => key === id || key.startsWith(`${id}-`));
  const newest = candidates.sort((a, b) => generation(b, id) - generation(a, id))[0];
  if (!newest) throw new Error(`the functions emulator has no trigger for ${name} (known: ${valid.join(", ")})`);
  keyCache.set(id, newest);
  return newest;
}

function generation(key: string, id: string): number {
  const rest = key.slice(id.length + 1);
  return rest === "" ? -1 : Number.parseInt(rest, 10);
}

/** POSTs `body` to the function's trigger and waits for the function to finish; returns the HTTP status. */
export async function deliver(
  functionsOrigin: string,
  name: string,
  body: unknown,
  contentType = "application/cloudevents+json",
): Promise<{ status: number; text: string }> {
  for (let attempt = 0; ; attempt++) {
    const key = await triggerKey(functionsOrigin, name, attempt > 0);
    const response = await fetch(`${functionsOrigin}/functions/projects/${PROJECT_ID}/triggers/${key}`, {
      method: "POST",
      headers: { "content-type": contentType },
      body: JSON.stringify(body),
      signal: AbortSignal.timeout(120_000),
    });
    const text = await response.text();
    // A reload between learning the key and using it: learn it again, once.
    if (response.status === 404 && attempt === 0) continue;
    return { status: response.status, text };
  }
}

/** An RTDB `ref.v1.written` CloudEvent for `ref` changing from `before` to `after`. */
export function rtdbWrittenEvent(ref: string, before: unknown, after: unknown, id: string = randomUUID()): CloudEvent {
  const instance = `${PROJECT_ID}-default-rtdb`;
  return {
    specversion: "1.0",
    id,
    source: `//firebasedatabase.googleapis.com/projects/_/locations/${REGION}/instances/${instance}`,
    type: "google.firebase.database.ref.v1.written",
    time: new Date().toISOString(),
    subject: `refs/${ref}`,
    ref,
    instance,
    firebasedatabasehost: "firebaseio.com",
    location: REGION,
    data: { data: before ?? null, delta: deltaBetween(before ?? null, after ?? null) },
  };
}

/**
 * The delta firebase-functions applies to `before` to get `after`:
 * keys that disappear are null, others recurse.
 */
export function deltaBetween(before: unknown, after: unknown): unknown {
  if (!isPlainObject(before) || !isPlainObject(after)) return after;
  const delta: Record<string, unknown> = {};
  for (const key of new Set([...Object.keys(before), ...Object.keys(after)])) {
    delta[key] = key in after ? deltaBetween(before[key], after[key]) : null;
  }
  return delta;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Fires a scheduled function once, as Cloud Scheduler would. */
export function fireSchedule(functionsOrigin: string, name: string): Promise<{ status: number; text: string }> {
  return deliver(functionsOrigin, name, {}, "application/json");
}

/** A Firestore value in the REST/JSON encoding CloudEvents carry. */
export function firestoreValue(value: unknown): Record<string, unknown> {
  if (value === null || value === undefined) return { nullValue: null };
  if (typeof value === "boolean") return { booleanValue: value };
  if (typeof value === "number")
    return Number.isInteger(value) ? { integerValue: String(value) } : { doubleValue: value };
  if (typeof value === "string") return { stringValue: value };
  if (value instanceof Date) return { timestampValue: value.toISOString() };
  if (Array.isArray(value)) return { arrayValue: { values: value.map(firestoreValue) } };
  return { mapValue: { fields: firestoreFields(value as Record<string, unknown>) } };
}

function firestoreFields(data: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(data).map(([key, item]) => [key, firestoreValue(item)]));
}

/**
 * A Firestore `document.v1.written` CloudEvent (JSON encoding) for the document
 * at `path` changing from `before` to `after` (undefined: absent), with the
 * given update times.
 */
export function firestoreWrittenEvent(
  path: string,
  before: { data: Record<string, unknown>; updateTime: Date } | undefined,
  after: { data: Record<string, unknown>; updateTime: Date } | undefined,
  id: string = randomUUID(),
): CloudEvent {
  const name = `projects/${PROJECT_ID}/databases/(default)/documents/${path}`;
  const encode = (doc: { data: Record<string, unknown>; updateTime: Date } | undefined) =>
    doc
      ? {
          name,
          fields: firestoreFields(doc.data),
          createTime: doc.updateTime.toISOString(),
          updateTime: doc.updateTime.toISOString(),
        }
      : undefined;
  return {
    specversion: "1.0",
    id,
    source: `//firestore.googleapis.com/projects/${PROJECT_ID}/databases/(default)`,
    type: "google.cloud.firestore.document.v1.written",
    time: (after ?? before)?.updateTime.toISOString() ?? new Date().toISOString(),
    subject: `documents/${path}`,
    datacontenttype: "application/json",
    project: PROJECT_ID,
    database: "(default)",
    namespace: "(default)",
    document: path,
    location: "us-central1",
    data: { value: encode(after), oldValue: encode(before) },
  };
}
