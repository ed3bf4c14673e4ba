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
 * reports change nothing).
 */
import type { Firestore } from "firebase-admin/firestore";
import { firestoreValues } from "../adapters/firebase";
import type { RedisGateway } from "../adapters/redis";
import type { PubSub } from "@google-cloud/pubsub";
import type { Clock } from "../shared/time";
import { systemClock } from "../shared/time";
import { readJob, TERMINAL, type Job } from "./model";
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
}

export type DispatchOutcome = "dispatched" | "skipped" | "pending";

export async function dispatchJob(deps: DispatchDeps, jobId: string): Promise<{ outcome: DispatchOutcome; error?: string }> {
  const clock = deps.clock ?? systemClock;
  const leaseMs = deps.leaseMs ?? 60_000;
  const { FieldValue } = firestoreValues();
  const leased = await deps.db.runTransaction(async (tx): Promise<Job | undefined> => {
    const job = await readJob(tx, deps.db, jobId);
    const now = clock.now();
    if (TERMINAL.has(job.status) || job.dispatch.state === "dispatched") return undefined;
    if (job.dispatch.state === "dispatching" && job.dispatch.leaseUntil && job.dispatch.leaseUntil.getTime() > now.getTime()) return undefined;
    tx.update(job.ref, {
      "dispatch.state": "dispatching",
      "dispatch.attempts": job.dispatch.attempts + 1,
      "dispatch.lease_until": new Date(now.getTime() + leaseMs),
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
  try {
    const messageId = await send(deps, leased, routing);
    await leased.ref.update({
      "dispatch.state": "dispatched",
      "dispatch.message_id": messageId,
      "dispatch.dispatched_at": FieldValue.serverTimestamp(),
      "dispatch.lease_until": null,
      "dispatch.last_error": null,
      routing: routing ?? null,
    });
    return { outcome: "dispatched" };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    await leased.ref.update({ "dispatch.state": "pending", "dispatch.lease_until": null, "dispatch.last_error": message.slice(0, 300) });
    return { outcome: "pending", error: message };
  }
}

async function send(deps: DispatchDeps, job: Job, routing: { provider: string; model: string } | undefined): Promise<string> {
  const type = jobType(job.type);
  if (!type) throw new Error(`unknown job type ${job.type}`);
  const payload = { job_id: job.id, type: job.type, user_id: job.userId, input: job.input, routing: routing ?? null };
  if (type.dispatch.kind === "stream") {
    if (!deps.redis) throw new Error("redis is not configured for stream dispatch");
    return addToStream(deps.redis, type.dispatch.stream, { job_id: job.id, type: job.type, user_id: job.userId, input: JSON.stringify(payload), attempt: 1 });
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
