/** RTDB trigger for operation_queues/{uid}/{opId}; see queue.ts. */
import { onValueWritten } from "firebase-functions/v2/database";
import { firestore, realtimeDb } from "../adapters/firebase";
import { redis } from "../adapters/redis";
import { logs } from "../shared/logs";
import { applyQueuedOperation, OPERATION_QUEUES } from "./queue";
import { spendLimiter } from "./ratelimit";

export const applyOperationQueue = onValueWritten(
  { ref: `${OPERATION_QUEUES}/{uid}/{opId}`, retry: true, timeoutSeconds: 60 },
  async (event) => {
    const outcome = await applyQueuedOperation(
      { db: firestore(), rtdb: realtimeDb(), limiter: spendLimiter(), lock: redis() },
      event.params.uid,
      event.params.opId,
      event.data.after.val(),
    );
    logs.queuedOperation(event.params.uid, event.params.opId, outcome);
  },
);
