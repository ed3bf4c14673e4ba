/**
 * Events that no emulator fires here, delivered by the harness:
 * RTDB writes (when the RTDB substitute runs instead of the official emulator)
 * and schedules (no emulator fires onSchedule by itself).
 */
import path from "node:path";
import { deliver, fireSchedule, rtdbWrittenEvent } from "./cloudevents";
import { http } from "./net";
import { ROOT } from "./services";

interface Trigger {
  name: string;
  eventTrigger?: { eventType: string; eventFilterPathPatterns?: { ref?: string } };
  scheduleTrigger?: { schedule?: string };
  /** How firebase-tools 14's functions emulator lists a schedule (its eventTrigger then says "pubsub"). */
  schedule?: { schedule?: string };
}

async function listTriggers(functionsOrigin: string): Promise<Trigger[]> {
  const { body } = await http(`${functionsOrigin}/backends`);
  const backends = (body as { backends?: Array<{ functionTriggers?: Trigger[] }> }).backends ?? [];
  return backends.flatMap((backend) => backend.functionTriggers ?? []);
}

const RTDB_PREFIX = "google.firebase.database.ref.v1.";

/**
 * Watches the RTDB substitute under each RTDB trigger's static path prefix and
 * delivers a CloudEvent for every concrete path (at the pattern's depth) whose
 * value changed, filtered by the trigger's kind (written, created, updated, deleted).
 */
export async function startRtdbWatcher(options: {
  functionsOrigin: string;
  env: Record<string, string>;
  log: (text: string) => void;
}): Promise<void> {
  const triggers = (await listTriggers(options.functionsOrigin)).filter((trigger) =>
    trigger.eventTrigger?.eventType.startsWith(RTDB_PREFIX),
  );
  if (triggers.length === 0) return;
  process.env.FIREBASE_DATABASE_EMULATOR_HOST = options.env.FIREBASE_DATABASE_EMULATOR_HOST;
  const functionsDir = path.join(ROOT, "functions");
  const { initializeApp } = require(
    require.resolve("firebase-admin/app", { paths: [functionsDir] }),
  ) as typeof import("firebase-admin/app");
  const { getDatabase } = require(
    require.resolve("firebase-admin/database", { paths: [functionsDir] }),
  ) as typeof import("firebase-admin/database");
  const app = initializeApp(
    {
      projectId: options.env.GCLOUD_PROJECT,
      databaseURL: (JSON.parse(options.env.FIREBASE_CONFIG) as { databaseURL: string }).databaseURL,
    },
    "harness-rtdb-watcher",
  );
  const db = getDatabase(app);

  for (const trigger of triggers) {
    const pattern = (trigger.eventTrigger?.eventFilterPathPatterns?.ref ?? "").replace(/^\/+|\/+$/g, "");
    const segments = pattern.split("/");
    const staticDepth = segments.findIndex((segment) => segment.startsWith("{"));
    const prefix = segments.slice(0, staticDepth < 0 ? segments.length : staticDepth).join("/");
    const kind = trigger.eventTrigger?.eventType.slice(RTDB_PREFIX.length) ?? "written";
    let previous: unknown = null;
    let queue = Promise.resolve();
    db.ref(prefix).on("value", (snapshot) => {
      const current = snapshot.val() as unknown;
      const changes = changedPaths(previous, current, segments.length - prefix.split("/").filter(Boolean).length);
      previous = current;
      for (const change of changes) {
        if (!wanted(kind, change.before, change.after)) continue;
        const ref = [prefix, ...change.path].filter(Boolean).join("/");
        // One delivery at a time per trigger, in the order the writes were seen.
        queue = queue
          .then(() =>
            deliver(options.functionsOrigin, trigger.name, rtdbWrittenEvent(ref, change.before, change.after)),
          )
          .then(({ status, text }) => {
            if (status >= 300)
              options.log(`rtdb trigger ${trigger.name} on ${ref}: HTTP ${status} ${text.slice(0, 200)}`);
          })
          .catch((error: unknown) => options.log(`rtdb trigger ${trigger.name} on ${ref} failed: ${String(error)}`));
      }
    });
  }
  options.log(`delivering RTDB triggers: ${triggers.map((trigger) => trigger.name).join(", ")}`);
}

function wanted(kind: string, before: unknown, after: unknown): boolean {
  if (kind === "created") return before === null && after !== null;
  if (kind === "deleted") return before !== null && after === null;
  if (kind === "updated") return before !== null && after !== null;
  return true;
}

interface Change {
  path: string[];
  before: unknown;
  after: unknown;
}

/** Concrete child paths `depth` levels below the root whose JSON differs between two trees. */
export function changedPaths(before: unknown, after: unknown, depth: number, path: string[] = []): Change[] {
  if (depth === 0) {
    return JSON.stringify(before ?? null) === JSON.stringify(after ?? null)
      ? []
      : [{ path, before: before ?? null, after: after ?? null }];
  }
  const asObject = (value: unknown) =>
    typeof value === "object" && value !== null ? (value as Record<string, unknown>) : {};
  const b = asObject(before);
  const a = asObject(after);
  return [...new Set([...Object.keys(b), ...Object.keys(a)])].flatMap((key) =>
    changedPaths(b[key], a[key], depth - 1, [...path, key]),
  );
}

/** Fires each scheduled function at its interval while `npm start` runs ("every N minutes|hours"). */
export function startScheduleTicker(options: { functionsOrigin: string; log: (text: string) => void }): void {
  void listTriggers(options.functionsOrigin).then((triggers) => {
    for (const trigger of triggers) {
      const schedule = trigger.schedule?.schedule ?? trigger.scheduleTrigger?.schedule;
      if (!schedule) continue;
      const everyMs = intervalOf(schedule);
      setInterval(() => {
        fireSchedule(options.functionsOrigin, trigger.name)
          .then(({ status }) => options.log(`schedule ${trigger.name}: HTTP ${status}`))
          .catch((error: unknown) => options.log(`schedule ${trigger.name} failed: ${String(error)}`));
      }, everyMs).unref();
      options.log(`firing ${trigger.name} every ${everyMs / 1000}s (${schedule})`);
    }
  });
}

function intervalOf(schedule: string): number {
  const match = /every (\d+) (minute|hour)s?/.exec(schedule);
  if (!match) return 60 * 60_000;
  return Number(match[1]) * (match[2] === "hour" ? 3_600_000 : 60_000);
}
