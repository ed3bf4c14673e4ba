/**
 * The jobs capability's functions: declarations only; the work is in
 * create.ts, dispatch.ts, report.ts, cancel.ts and sweep.ts.
 */
import { onDocumentCreated } from "firebase-functions/v2/firestore";
import { onMessagePublished } from "firebase-functions/v2/pubsub";
import { onSchedule } from "firebase-functions/v2/scheduler";
import { firestore, realtimeDb } from "../adapters/firebase";
import { mongoConfigured, mongoDb } from "../adapters/mongo";
import { pubsub } from "../adapters/pubsub";
import { redis } from "../adapters/redis";
import {
  JOBS_MAX_DELIVERIES,
  JOBS_STREAM_MAX_LENGTH,
  JOBS_VISIBILITY_TIMEOUT_MS,
  MODEL_PROVIDERS,
  WORKER_API_KEY,
} from "../config";
import { loadRouterConfig } from "../routing/config";
import { routeTask } from "../routing/router";
import { systemClock } from "../shared/time";
import { callable, parseInput } from "../shared/callable";
import { DomainError } from "../shared/errors";
import { apiKeyEndpoint } from "../shared/http";
import { logs } from "../shared/logs";
import { cancelJob as cancel } from "./cancel";
import { createJob as create } from "./create";
import { dispatchJob, type Router } from "./dispatch";
import type { JobDeps } from "./job";
import { applyReport, deadLetterReport } from "./report";
import { CreateJobInput, JobIdInput, JobReport } from "./schemas";
import { sweepJobs } from "./sweep";

/** The topic workers may publish their reports to. */
export const JOB_RESULTS_TOPIC = "job-results";

function jobDeps(): JobDeps {
  // Without MongoDB a final job notifies nobody; its state and money are unaffected.
  return { db: firestore(), rtdb: realtimeDb(), mongo: mongoConfigured() ? mongoDb : undefined, redis: redis() };
}

export const createJob = callable({
  name: "createJob",
  access: "user",
  schema: CreateJobInput,
  handler: (input, caller) => create({ db: firestore(), lock: redis() }, caller.uid, input),
});

export const cancelJob = callable({
  name: "cancelJob",
  access: "user",
  schema: JobIdInput,
  handler: (input, caller) => cancel(jobDeps(), caller.uid, input.job_id),
});

/**
 * The model router (routing/router.ts): provider health, quota headroom and cost; each decision is logged.
 * With no providers configured, routing is off and jobs are dispatched without it.
 */
function modelRouter(): Router {
  return {
    route: async (request) => {
      const db = firestore();
      const config = await loadRouterConfig(db, MODEL_PROVIDERS.value());
      if (config.providers.length === 0) return undefined;
      const decision = await routeTask({ db, clock: systemClock, config }, request);
      return { provider: decision.selected_provider, model: decision.selected_model };
    },
  };
}

/** The outbox: the job's dispatch record dedupes repeated deliveries (see dispatch.ts); failures wait for the sweeper. */
export const jobDispatcher = onDocumentCreated(
  { document: "jobs/{jobId}", retry: false, timeoutSeconds: 60 },
  async (event) => {
    const jobId = event.params.jobId;
    const result = await dispatchJob(
      {
        db: firestore(),
        redis: redis(),
        pubsub,
        router: modelRouter(),
        streamMaxLength: JOBS_STREAM_MAX_LENGTH.value(),
      },
      jobId,
    );
    logs.jobDispatched(jobId, result.outcome, result.error);
  },
);

/** Reports published by workers; a report id is applied once, and final jobs ignore everything. */
export const jobResultsConsumer = onMessagePublished(
  { topic: JOB_RESULTS_TOPIC, retry: true, timeoutSeconds: 60 },
  async (event) => {
    const delivery = {
      topic: JOB_RESULTS_TOPIC,
      messageId: event.data.message.messageId,
      json: messageJson(event.data.message),
    };
    let report;
    try {
      report = parseInput(JobReport, delivery.json);
    } catch (error) {
      // A malformed report never becomes valid: dead-letter it with the reason and ack instead of retrying it forever.
      await deadLetterReport(firestore(), delivery, error instanceof Error ? error.message : String(error));
      return;
    }
    const result = await applyReport(jobDeps(), report, "worker:pubsub").catch(async (error: unknown) => {
      if (error instanceof DomainError) {
        await deadLetterReport(firestore(), delivery, error.message);
        return undefined;
      }
      throw error;
    });
    if (result) logs.jobReported(result.job_id, report.kind, result.applied);
  },
);

/** The message's JSON body; a body that is not JSON is malformed like any other bad report. */
function messageJson(message: { json: unknown }): unknown {
  try {
    return message.json;
  } catch {
    return undefined;
  }
}

/**
 * HTTPS `jobReport`: workers outside Functions report here.
 *   POST /jobReport   Authorization: Bearer <WORKER_API_KEY>   body: a report (see schemas.ts)
 * Answers {result: {job_id, applied, status, final}}; `final` tells the worker to stop.
 */
export const jobReport = apiKeyEndpoint({
  name: "jobReport",
  secret: WORKER_API_KEY,
  schema: JobReport,
  handler: async (report) => {
    const result = await applyReport(jobDeps(), report, "worker:https");
    logs.jobReported(result.job_id, report.kind, result.applied);
    return { status: 200, body: { result } };
  },
});

export const jobsSweeper = onSchedule({ schedule: "every 1 minutes", timeoutSeconds: 120 }, async () => {
  const result = await sweepJobs(
    { ...jobDeps(), pubsub, router: modelRouter(), streamMaxLength: JOBS_STREAM_MAX_LENGTH.value() },
    { visibilityMs: JOBS_VISIBILITY_TIMEOUT_MS.value(), maxDeliveries: JOBS_MAX_DELIVERIES.value() },
  );
  logs.jobsSwept({ ...result, errors: result.errors.length, first_error: result.errors[0] ?? null });
});
