/** Inputs of the job callables and of worker reports (strict: unknown fields are refused). */
import { z } from "zod";
import { JOB_TYPE_NAMES } from "./registry";

const idempotencyKey = z.string().min(8).max(128).regex(/^[A-Za-z0-9_:.\-]+$/, "letters, digits and _ : . - only");
const jobId = z.string().min(1).max(128).regex(/^[A-Za-z0-9_\-]+$/);

/** The job's own input is validated against its type's schema after this. */
export const createJobInput = z
  .object({
    type: z.enum(JOB_TYPE_NAMES),
    input: z.record(z.unknown()),
    idempotency_key: idempotencyKey,
  })
  .strict();

export const jobIdInput = z.object({ job_id: jobId }).strict();

const outputs = z.record(z.union([z.string().max(2000), z.number(), z.boolean()])).refine((value) => Object.keys(value).length <= 20, "at most 20 outputs");

/** What a worker reports: progress, or an outcome. `report_id` is unique per job and report (e.g. `{seq}`). */
export const jobReportInput = z.discriminatedUnion("kind", [
  z
    .object({
      kind: z.literal("progress"),
      job_id: jobId,
      report_id: z.string().min(1).max(64),
      stage: z.string().min(1).max(64),
      pct: z.number().min(0).max(100),
    })
    .strict(),
  z
    .object({
      kind: z.literal("succeeded"),
      job_id: jobId,
      report_id: z.string().min(1).max(64),
      cost: z.number().int().min(0),
      outputs,
    })
    .strict(),
  z
    .object({
      kind: z.literal("failed"),
      job_id: jobId,
      report_id: z.string().min(1).max(64),
      error: z.string().min(1).max(500),
    })
    .strict(),
]);

export type CreateJobInput = z.infer<typeof createJobInput>;
export type JobReport = z.infer<typeof jobReportInput>;
