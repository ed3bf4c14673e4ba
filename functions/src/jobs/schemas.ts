/** Inputs of the job callables and of worker reports (strict: unknown fields are refused). */
import * as z from "zod";
import { boundedMap, documentId, mapKey } from "../shared/ids";
import { JOB_TYPE_NAMES } from "./registry";

const idempotencyKey = z
  .string()
  .min(8)
  .max(128)
  .regex(/^[A-Za-z0-9_:.-]+$/, "letters, digits and _ : . - only");
const jobId = documentId({
  max: 128,
  pattern: { regex: /^[A-Za-z0-9_-]+$/, message: "letters, digits, _ and - only" },
});
/** Part of the report's dedupe document id (`{job_id}:{report_id}`). */
const reportId = documentId({ max: 64 });

/** The job's own input is validated against its type's schema after this. */
export const CreateJobInput = z
  .object({
    type: z.enum(JOB_TYPE_NAMES),
    input: boundedMap(),
    idempotency_key: idempotencyKey,
  })
  .strict();

export const JobIdInput = z.object({ job_id: jobId }).strict();

/** Stored as the job's `outputs` map: keys must be valid Firestore field names. */
const outputs = z
  .record(mapKey, z.union([z.string().max(2000), z.number(), z.boolean()]))
  .refine((value) => Object.keys(value).length <= 20, "at most 20 outputs");

/** What a worker reports: progress, or an outcome. `report_id` is unique per job and report (e.g. `{seq}`). */
export const JobReport = z.discriminatedUnion("kind", [
  z
    .object({
      kind: z.literal("progress"),
      job_id: jobId,
      report_id: reportId,
      stage: z.string().min(1).max(64),
      pct: z.number().min(0).max(100),
    })
    .strict(),
  z
    .object({
      kind: z.literal("succeeded"),
      job_id: jobId,
      report_id: reportId,
      cost: z.number().int().min(0),
      outputs,
    })
    .strict(),
  z
    .object({
      kind: z.literal("failed"),
      job_id: jobId,
      report_id: reportId,
      error: z.string().min(1).max(500),
    })
    .strict(),
]);

export type CreateJobInput = z.infer<typeof CreateJobInput>;
export type JobIdInput = z.infer<typeof JobIdInput>;
export type JobReport = z.infer<typeof JobReport>;
