/**
 * The simulation's world: the real dependencies the use cases take (Firestore
 * and RTDB emulators, redis-server, LanceDB on disk, a fixed clock), the
 * scheduler's model of what it has done so far, and the pools of pending
 * deliveries (trigger events, worker reports, queued ops, Pub/Sub messages)
 * that the scheduler hands to the use cases duplicated, reordered and late.
 *
 * Everything the scheduler chooses comes from one seeded PRNG and from this
 * model, never from a read of a store, so a seed replays the same choices.
 */
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import type { Connection } from "@lancedb/lancedb";
import type { Database } from "firebase-admin/database";
import type { Firestore } from "firebase-admin/firestore";
import { RedisGateway } from "../../functions/src/adapters/redis";
import { pubsub } from "../../functions/src/adapters/pubsub";
import type { EmbeddingRequest } from "../../functions/src/embeddings/schemas";
import { LocalEmbedder } from "../../functions/src/embeddings/local";
import { ProviderError } from "../../functions/src/embeddings/errors";
import type { EmbedPurpose, EmbeddingProvider } from "../../functions/src/embeddings/provider";
import type { JobReport } from "../../functions/src/jobs/schemas";
import type { AuditEvent } from "../../functions/src/audit/record";
import type { BalanceState } from "../../functions/src/mirror/balance";
import type { ProbeResult } from "../../functions/src/routing/provider-health";
import { seededRandom } from "../support/random";
import { firestore, fixedClock, functionsRequire, otherInstanceFirestore, realtimeDb } from "../support/stores";
import { control, suite, waitFor } from "../support/suite";

/** The PRNG every choice comes from. */
export class Rng {
  private readonly next: () => number;

  constructor(seed: number) {
    this.next = seededRandom(seed);
  }

  float(): number {
    return this.next();
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error("pick from an empty list");
    return items[Math.floor(this.next() * items.length)];
  }

  /** Index of an item chosen by weight. */
  weighted(weights: readonly number[]): number {
    const total = weights.reduce((sum, weight) => sum + weight, 0);
    let roll = this.next() * total;
    for (const [index, weight] of weights.entries()) {
      roll -= weight;
      if (roll < 0) return index;
    }
    return weights.length - 1;
  }
}

/** A promise that someone else settles: how a step holds one operation at a chosen point while another runs. */
export interface Gate {
  promise: Promise<void>;
  open(): void;
}

export function gate(): Gate {
  let open: () => void = () => undefined;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
}

/** The text that marks an embedding request as failing at the provider every time (a transient 503). */
export const POISON = "POISON";

/**
 * The local deterministic embedder, with two things the scheduler controls:
 * texts containing POISON fail transiently, and a hook on a text pauses its
 * embedding (after telling the scheduler it got there) until the scheduler
 * lets it go — how "a message in flight during X" is made to happen exactly.
 */
export class SimEmbedder implements EmbeddingProvider {
  private readonly inner = new LocalEmbedder(32);
  readonly modelId = this.inner.modelId;
  readonly dimension = this.inner.dimension;
  readonly batchSize = 64;
  readonly hooks = new Map<string, { reached: Gate; release: Gate }>();

  async embed(texts: string[], purpose: EmbedPurpose): Promise<number[][]> {
    for (const [text, hook] of this.hooks) {
      if (texts.some((chunk) => chunk.includes(text))) {
        hook.reached.open();
        await hook.release.promise;
      }
    }
    if (purpose === "document" && texts.some((chunk) => chunk.includes(POISON)))
      throw new ProviderError("sim: provider answered HTTP 503", true, 503);
    return this.inner.embed(texts, purpose);
  }
}

export interface SimUser {
  uid: string;
  /** Deleted at least once (its mirror's deliveries interleave a deletion with versions; see checkMirrors). */
  everDeleted: boolean;
  deleted: boolean;
  spendKeys: Array<{ key: string; feature: string; quantity: number }>;
}

export interface SimJob {
  id: string;
  uid: string;
  price: number;
  type: string;
  reports: number;
  /** Its `hold_id` was pointed at a hold that does not exist (the poisonJob fault): it can never be finished. */
  poisoned?: boolean;
  /** Sim time of the sweep (with Redis up) that first found this dispatched, queued job missing from its stream. */
  missingSince?: number;
}

export interface QueueOp {
  uid: string;
  opId: string;
  value: Record<string, unknown>;
  /** The first answer seen written back (status and what identifies the result), never to change. */
  answer?: string;
}

export interface EmbeddingMessage {
  id: string;
  sourceId: string;
  text: string;
  request: EmbeddingRequest;
  /** Deliveries that ended in a thrown error (asking Pub/Sub to redeliver). */
  failures: number;
  outcome?: string;
}

export interface SimSource {
  id: string;
  /** requested_at of the newest message that returned indexed/unchanged. */
  newestApplied: number;
  /** Highest generation applied (indexed or unchanged): generations, not clocks, order a request and a delete. */
  newestAppliedGeneration: number;
  /** `deleted_generation` of the source record after the last delete (0: never deleted). */
  deletedGeneration: number;
  /** When deleteKnowledge last succeeded (0: never). */
  deletedAt: number;
  lastText?: string;
}

export interface MirrorDelivery {
  uid: string;
  /** undefined: the user document's deletion. */
  state?: BalanceState;
}

/** The onUserDeleted trigger's event: whose document was deleted, and its ledger_version then (what the closure judges by). */
export interface ClosureDelivery {
  uid: string;
  closedAtVersion: number;
}

/** An audit trigger's event for users/{uid} (path and time are filled in at delivery), and the actor it must record. */
export type AuditDelivery = Pick<AuditEvent, "eventId" | "before" | "after"> & { uid: string; actor: string };

/** A Stripe event the sim owes the webhook: sent at `sentAt` (sim ms); Stripe retries it for three days. */
export interface SimStripeDelivery {
  payment: SimPayment;
  event: { id: string; type: string; data: { object: Record<string, unknown> } };
  sentAt: number;
}

/** A Checkout payment as Stripe sees it (what it has sent) and as the webhook has been told (what was delivered). */
export interface SimPayment {
  id: string;
  uid: string;
  sessionId: string;
  paymentIntent: string;
  credits: number;
  amount: number;
  /** Sent so far: the cumulative amount refunded, the dispute and its state. */
  refunded: number;
  dispute?: { id: string; state: "withdrawn" | "reinstated" };
  /** Delivered at least once: the paid completion, the largest cumulative refund, dispute states. */
  delivered: { paid: boolean; refunded: number; withdrawn: boolean; reinstated: boolean };
}

export interface SimProvider {
  name: string;
  ok: boolean;
}

/** One line of the step log. */
export interface StepRecord {
  step: number;
  op: string;
  detail: string;
  outcome: string;
}

export const HOUR = 3_600_000;
export const DAY = 24 * HOUR;
export const MAX_DELIVERIES = 3;
export const SWEEP = { visibilityMs: 60_000, maxDeliveries: 3 };

/** The Cloud Functions instance an operation runs on: World.db's client, or World.otherInstance. */
export type Instance = 0 | 1;

/** One run of one seed. */
export class World {
  readonly rng: Rng;
  readonly clock: ReturnType<typeof fixedClock>;
  readonly db: Firestore = firestore();
  /**
   * A second client of the same emulator: another Cloud Functions instance. Grants and spends run on either
   * (picked when planned), so what one instance remembers of a user (credits/committed-state.ts) is often stale.
   */
  readonly otherInstance: Firestore = otherInstanceFirestore();
  readonly rtdb: Database = realtimeDb();
  readonly redis: RedisGateway;
  readonly embedder = new SimEmbedder();
  readonly lanceDir: string;
  private lanceConnection?: Promise<Connection>;
  readonly nonce: string;

  users: SimUser[] = [];
  jobs: SimJob[] = [];
  reports: Array<{ report: JobReport }> = [];
  queueOps: QueueOp[] = [];
  queueDeliveries: QueueOp[] = [];
  mirrorDeliveries: MirrorDelivery[] = [];
  closureDeliveries: ClosureDelivery[] = [];
  auditDeliveries: AuditDelivery[] = [];
  deliveredAudits: AuditDelivery[] = [];
  messages: EmbeddingMessage[] = [];
  sources: SimSource[] = [];
  providers: SimProvider[] = [];
  payments: SimPayment[] = [];
  stripeDeliveries: SimStripeDelivery[] = [];
  /** Spend and capture entries a refund may name. */
  refundable: string[] = [];
  alerts: string[] = [];
  redisUp = true;
  /** Ledger versions already turned into mirror and audit deliveries, per user. */
  seenVersions = new Map<string, number>();
  /** Violations seen while running an operation (checked with the others after the step). */
  violations: string[] = [];
  /** Facts the checks after the step need (e.g. "a sweep just ran"). */
  after = {
    swept: false,
    sweptWithRedis: false,
    healthChecked: false,
    lastProbe: new Map<string, boolean>(),
    /** Jobs this step dispatched, then lost from Redis by a flush, then swept with Redis up: each must be back on its stream. */
    lostAndSwept: [] as string[],
  };
  log: StepRecord[] = [];
  counter = 0;

  constructor(
    readonly seed: number,
    runNonce: string,
  ) {
    this.rng = new Rng(seed);
    this.nonce = `${seed.toString(36)}${runNonce}`;
    this.clock = fixedClock(new Date(Math.floor(Date.now() / 1000) * 1000));
    this.redis = new RedisGateway({
      url: suite.redisUrl,
      commandTimeoutMs: 1000,
      connectWaitMs: 1000,
      breaker: { failureThreshold: 3, cooldownMs: 200 },
    });
    this.lanceDir = mkdtempSync(path.join(os.tmpdir(), "metered-ai-sim-lance-"));
  }

  /** A fresh id from the seed and the step counter (and the run's nonce, so runs never collide). */
  id(prefix: string): string {
    this.counter += 1;
    return `${prefix}${this.counter}x${this.nonce}`;
  }

  lance = (): Promise<Connection> => {
    this.lanceConnection ??= functionsRequire<typeof import("@lancedb/lancedb")>("@lancedb/lancedb").connect(
      this.lanceDir,
      { readConsistencyInterval: 0 },
    );
    return this.lanceConnection;
  };

  jobDeps() {
    return { db: this.db, rtdb: this.rtdb, redis: this.redis, pubsub, clock: this.clock };
  }

  creditDeps(instance: Instance = 0) {
    return { db: instance === 1 ? this.otherInstance : this.db, clock: this.clock, lock: this.redis };
  }

  /** Which instance a planned credit operation runs on. */
  pickInstance(): Instance {
    return this.rng.chance(0.5) ? 1 : 0;
  }

  probe = async (provider: { name: string }): Promise<ProbeResult> => {
    const ok = this.providers.find((candidate) => candidate.name === provider.name)?.ok ?? true;
    this.after.lastProbe.set(provider.name, ok);
    return ok ? { ok: true, latency_ms: 20, error: null } : { ok: false, latency_ms: 1000, error: "sim: probe failed" };
  };

  liveUsers(): SimUser[] {
    return this.users.filter((user) => !user.deleted);
  }

  /** Starts the seed from empty stores, so a replay sees exactly what the first run saw. */
  async reset(): Promise<void> {
    if (!(await redisRunning())) await control("redis/start");
    const host = process.env.FIRESTORE_EMULATOR_HOST;
    // The emulator answers 409 while a transaction (a trigger of the previous seed still running) holds locks: retry.
    await waitFor(
      "the Firestore emulator to clear",
      async () => {
        const response = await fetch(
          `http://${host}/emulator/v1/projects/${suite.projectId}/databases/(default)/documents`,
          { method: "DELETE", signal: AbortSignal.timeout(30_000) },
        );
        if (response.status === 409) throw new Error("HTTP 409 (a transaction holds locks)");
        if (!response.ok) throw new Error(`clearing the Firestore emulator: HTTP ${response.status}`);
        return true;
      },
      { timeoutMs: 60_000, intervalMs: 500 },
    );
    await Promise.all(
      ["operation_queues", "user_balances", "job_progress"].map((node) => this.rtdb.ref(node).remove()),
    );
    await this.redis.run((client) => client.flushall());
  }

  async close(): Promise<void> {
    if (!this.redisUp) await control("redis/start");
    await this.redis.close();
    const connection = await this.lanceConnection;
    connection?.close();
    rmSync(this.lanceDir, { recursive: true, force: true });
  }
}

async function redisRunning(): Promise<boolean> {
  const response = await fetch(`${suite.controlUrl}/status`, { signal: AbortSignal.timeout(10_000) });
  const body = (await response.json()) as { redis?: string };
  return body.redis === "running";
}
