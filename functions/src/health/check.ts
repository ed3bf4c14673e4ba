/**
 * The health use case: ping every component concurrently, each with its own
 * timeout, and summarise.
 *
 * A required component down makes the whole answer `down`; an optional one
 * makes it `degraded`. Firestore is the source of truth, so it is the one
 * required component.
 */
import { TimeoutError, elapsedMs, withTimeout } from "../shared/time";

export const COMPONENTS = ["firestore", "rtdb", "redis", "mongodb", "lancedb", "pubsub"] as const;
export type Component = (typeof COMPONENTS)[number];
export type Probe = () => Promise<unknown>;
export type Probes = Record<Component, Probe>;

export const REQUIRED: ReadonlySet<Component> = new Set<Component>(["firestore"]);

export type ComponentDetail = { latency_ms: number } | { error: string; latency_ms: number };

export interface HealthReport {
  status: "ok" | "degraded" | "down";
  environment: string;
  version: string;
  components: Record<Component, "up" | "down">;
  details: Record<Component, ComponentDetail>;
}

export interface HealthDeps {
  probes: Probes;
  timeoutMs: number;
  environment: string;
  version: string;
}

export async function checkHealth(deps: HealthDeps): Promise<HealthReport> {
  const results = await Promise.all(
    COMPONENTS.map(async (name) => {
      const start = performance.now();
      try {
        await withTimeout(deps.probes[name](), deps.timeoutMs, name);
        return [name, { latency_ms: elapsedMs(start) }] as const;
      } catch (error) {
        return [name, { error: describe(error), latency_ms: elapsedMs(start) }] as const;
      }
    }),
  );
  const details = Object.fromEntries(results) as Record<Component, ComponentDetail>;
  const components = Object.fromEntries(
    results.map(([name, detail]) => [name, "error" in detail ? "down" : "up"]),
  ) as Record<Component, "up" | "down">;
  const down = COMPONENTS.filter((name) => components[name] === "down");
  const status = down.some((name) => REQUIRED.has(name)) ? "down" : down.length > 0 ? "degraded" : "ok";
  return { status, environment: deps.environment, version: deps.version, components, details };
}

function describe(error: unknown): string {
  if (error instanceof TimeoutError) return `timeout after ${error.ms} ms`;
  const message = error instanceof Error ? error.message : String(error);
  // One line, bounded: details are for operators, not a dump.
  return message.split("\n")[0].slice(0, 200);
}
