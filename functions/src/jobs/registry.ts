/**
 * The job type registry: per type a strict input schema, a price, where the
 * job is dispatched and how long it may take. Adding a type is adding an entry.
 */
import type { ZodType } from "zod";
import * as z from "zod";
import { priceOf } from "../credits";

/** Where a job goes: a Pub/Sub topic, or a Redis stream `jobs:{type}` for workers outside Functions. */
export type DispatchTarget = { kind: "pubsub"; topic: string } | { kind: "stream"; stream: string };

export interface JobType<I = unknown> {
  name: string;
  input: ZodType<I>;
  /** Credits reserved (the hold): the most the job can cost. */
  price: (input: I) => number;
  dispatch: DispatchTarget;
  /** From creation to a final state; past it the sweeper fails the job and releases its hold. */
  deadlineMs: number;
}

export const PodcastInput = z
  .object({
    topic: z.string().trim().min(1).max(500),
    duration_min: z.number().int().min(1).max(60),
    voice: z.enum(["warm", "bright", "calm"]).optional(),
  })
  .strict();

export const ReportInput = z
  .object({
    subject: z.string().trim().min(1).max(200),
    pages: z.number().int().min(1).max(20),
  })
  .strict();

export type PodcastInput = z.infer<typeof PodcastInput>;
export type ReportInput = z.infer<typeof ReportInput>;

export function streamOf(type: string): string {
  return `jobs:${type}`;
}

export function dlqOf(stream: string): string {
  return `${stream}:dlq`;
}

/** Erases a type's input type for the registry; `price` is only ever given what `input` parsed. */
function defineJobType<I>(type: JobType<I>): JobType<unknown> {
  return { ...type, input: type.input, price: (input) => type.price(input as I) };
}

const podcast = defineJobType<PodcastInput>({
  name: "podcast",
  input: PodcastInput,
  price: (input) => priceOf("podcast.minute", input.duration_min),
  dispatch: { kind: "stream", stream: streamOf("podcast") },
  deadlineMs: 30 * 60_000,
});

const report = defineJobType<ReportInput>({
  name: "report",
  input: ReportInput,
  price: (input) => priceOf("report.page", input.pages),
  dispatch: { kind: "pubsub", topic: "jobs-report" },
  deadlineMs: 10 * 60_000,
});

/** Every job type by name. */
export const JOB_TYPES: Readonly<Record<string, JobType<unknown>>> = Object.freeze({ podcast, report });

export const JOB_TYPE_NAMES = Object.keys(JOB_TYPES) as [string, ...string[]];

export function jobType(name: string): JobType<unknown> | undefined {
  return Object.prototype.hasOwnProperty.call(JOB_TYPES, name) ? JOB_TYPES[name] : undefined;
}

/** Stream names of every stream-dispatched type (the sweeper re-claims these). */
export function streamTypes(): Array<{ type: string; stream: string }> {
  return Object.values(JOB_TYPES).flatMap((type) =>
    type.dispatch.kind === "stream" ? [{ type: type.name, stream: type.dispatch.stream }] : [],
  );
}
