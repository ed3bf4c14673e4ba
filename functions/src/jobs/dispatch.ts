/**
 * The outbox: a created job is published to its topic or added to its stream
 * exactly once as far as this side can tell.
 *
 * The job's `dispatch` record is the outbox state. A dispatcher first leases
 * it in a transaction (pending → dispatching), sends, then marks it
 * dispatched; a duplicate trigger delivery finds it leased or dispatched and
 * sends nothing. If sending fails (Redis down), the record goes back to
 * pending with the error and the sweeper retries; the job stays queued and is
 * never lost. A crash between sending and marking leaves a lease that expires
 * and a second send: workers dedupe by job id (a final or running job's
 * reports change nothing). The lease carries its holder's id, and only the
 * holder ends it (dispatched or pending), in a transaction that compares the
 * id: a slow dispatcher whose lease was taken over changes nothing.
 * A dispatched stream job whose entry Redis lost is leased again by the
 * sweeper (`lostEntry`), compared against the recorded entry id.
 */
import { randomUUID } from "node:crypto";
import type { Firestore } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import type { RedisGateway } from "../adapters/redis";
import type { PubSub } from "@google-cloud/pubsub";
import type { Clock } from "../shared/time";
import { systemClock } from "../shared/time";
import { jobOf, jobRef, readJob, TERMINAL, type Job } from "./job";
import { jobType } from "./registry";
import { addToStream } from "./streams";

/** Picks a provider and model for a task (the router); optional. */
export interface Router {
  route(request: { task_type: string; job_id: string }): Promise<{ provider: string; model: string } | undefined>;
}

export interface DispatchDeps {
  db: Firestore;
  redis?: RedisGateway;
  pubsub?: () => PubSub;
  router?: Router;
  clock?: Clock;
  /** How long a dispatcher may take before another may try again. */
  leaseMs?: number;
  /** Cap of each `jobs:{type}` stream (XADD MAXLEN ~). */
  streamMaxLength?: number;
}

/** A job changed this many times between one read and the write after it is too busy to dispatch now. */
const LEASE_WRITE_ATTEMPTS = 10;

export type DispatchOutcome = "dispatched" | "skipped" | "pending";

export interface DispatchOptions {
  /**
   * The job's recorded stream entry that the sweeper found gone from Redis:
   * a `dispatched` job whose `dispatch.message_id` is still this entry may be
   * leased and sent again (workers tolerate duplicates).
   */
  lostEntry?: string;
}

export async function dispatchJob(
  deps: DispatchDeps,
  jobId: string,
  options: DispatchOptions = {},
): Promise<{ outcome: DispatchOutcome; error?: string }> {
  const clock = deps.clock ?? systemClock;
  const leaseMs = deps.leaseMs ?? 60_000;
  const { FieldValue } = firestoreValues();
  // This dispatcher's lease: only its holder may move the record on from `dispatching`.
  const owner = randomUUID();
  const leased = await deps.db.runTransaction(async (tx): Promise<Job | undefined> => {
    const job = await readJob(tx, deps.db, jobId);
    const now = clock.now();
    if (TERMINAL.has(job.status)) return undefined;
    if (job.dispatch.state === "dispatched" && !(options.lostEntry && job.dispatch.messageId === options.lostEntry))
      return undefined;
    if (job.dispatch.state === "skipped") return undefined;
    if (
      job.dispatch.state === "dispatching" &&
      job.dispatch.leaseUntil &&
      job.dispatch.leaseUntil.getTime() > now.getTime()
    )
      return undefined;
    tx.update(job.ref, {
      "dispatch.state": "dispatching",
      "dispatch.attempts": job.dispatch.attempts + 1,
      "dispatch.lease_until": new Date(now.getTime() + leaseMs),
      "dispatch.lease_owner": owner,
      ...(options.lostEntry ? { "dispatch.last_error": `stream entry ${options.lostEntry} lost from Redis` } : {}),
      updated_at: FieldValue.serverTimestamp(),
    });
    return job;
  });
  if (!leased) return { outcome: "skipped" };

  let routing: { provider: string; model: string } | undefined;
  try {
    routing = deps.router ? await deps.router.route({ task_type: leased.type, job_id: leased.id }) : undefined;
  } catch {
    // Routing is advice for the worker; a job is dispatched without it rather than held back.
    routing = undefined;
  }
  // The routing is on the job before the worker can see it: a fast worker may
  // finish the job before this dispatcher records `dispatched`.
  if (routing && !(await completeLease(deps, jobId, owner, { routing }))) return { outcome: "skipped" };
  try {
    const messageId = await send(deps, leased, routing);
    await completeLease(deps, jobId, owner, {
      "dispatch.state": "dispatched",
      "dispatch.message_id": messageId,
      "dispatch.dispatched_at": FieldValue.serverTimestamp(),
      "dispatch.lease_until": null,
      "dispatch.lease_owner": null,
      "dispatch.last_error": null,
      ...(routing ? {} : { routing: null }),
    });
    return { outcome: "dispatched" };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    // A dispatcher whose lease was taken over (it was too slow) must not undo the new holder's `dispatched`.
    await completeLease(deps, jobId, owner, {
      "dispatch.state": "pending",
      "dispatch.lease_until": null,
      "dispatch.lease_owner": null,
      "dispatch.last_error": message.slice(0, 300),
    });
    return { outcome: "pending", error: message };
  }
}

/**
 * Writes the end of a lease, only if this dispatcher still holds it (the record is `dispatching` under its owner
 * id); otherwise another dispatcher or a final state owns the record now and nothing is written.
 *
 * Not a transaction: once the stream entry is out, a worker's report may be changing the job at the same moment,
 * and two transactions that each read and then write one document wait on each other's lock (in the emulator
 * until one times out, over 2 s: the jobs bench saw it on 14 of 15 jobs). A write guarded by the update time of
 * what was read waits for a transaction holding the job and then fails if the job changed, instead of
 * deadlocking; it reads again and decides again.
 */
async function completeLease(
  deps: DispatchDeps,
  jobId: string,
  owner: string,
  fields: Record<string, unknown>,
): Promise<boolean> {
  const ref = jobRef(deps.db, jobId);
  for (let attempt = 1; ; attempt += 1) {
    const snapshot = await ref.get();
    const job = jobOf(ref, snapshot);
    if (job.dispatch.state !== "dispatching" || job.dispatch.leaseOwner !== owner) return false;
    try {
      await ref.update(
        { ...fields, updated_at: firestoreValues().FieldValue.serverTimestamp() },
        { lastUpdateTime: snapshot.updateTime },
      );
      return true;
    } catch (error) {
      // gRPC 9 = FAILED_PRECONDITION: the job changed since it was read.
      if ((error as { code?: unknown }).code !== 9 || attempt >= LEASE_WRITE_ATTEMPTS) throw error;
    }
  }
}

async function send(
  deps: DispatchDeps,
  job: Job,
  routing: { provider: string; model: string } | undefined,
): Promise<string> {
  const type = jobType(job.type);
  if (!type) throw new Error(`unknown job type ${job.type}`);
  const payload = { job_id: job.id, type: job.type, user_id: job.userId, input: job.input, routing: routing ?? null };
  if (type.dispatch.kind === "stream") {
    if (!deps.redis) throw new Error("redis is not configured for stream dispatch");
    const entry = { job_id: job.id, type: job.type, user_id: job.userId, input: JSON.stringify(payload), attempt: 1 };
    return addToStream(deps.redis, type.dispatch.stream, entry, deps.streamMaxLength);
  }
  if (!deps.pubsub) throw new Error("pubsub is not configured");
  const client = deps.pubsub();
  const topic = client.topic(type.dispatch.topic);
  const message = { json: payload, attributes: { job_id: job.id, type: job.type } };
  try {
    return await topic.publishMessage(message);
  } catch (error) {
    // NOT_FOUND: the topic does not exist yet (a fresh emulator or project); create it once.
    if ((error as { code?: number }).code !== 5) throw error;
    await client.createTopic(type.dispatch.topic).catch((createError: { code?: number }) => {
      if (createError.code !== 6) throw createError;
    });
    return topic.publishMessage(message);
  }
}
