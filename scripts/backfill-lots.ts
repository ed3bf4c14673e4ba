/**
 * `npm run backfill:lots`: give every user whose credits predate lots their `legacy` lot.
 *
 * Same environment as `npm run backfill:mirrors` (the emulator variables `npm start` prints, or
 * Application Default Credentials with GCLOUD_PROJECT). Idempotent, paged (`--page-size=N`, default
 * 300), one line of progress per page, safe while traffic runs (see functions/src/credits/lot-backfill.ts).
 */
import { firestore } from "../functions/src/adapters/firebase";
import { backfillLots } from "../functions/src/credits/lot-backfill";

async function main(): Promise<void> {
  const pageSize = Number(process.argv.find((arg) => arg.startsWith("--page-size="))?.split("=")[1] ?? 300);
  const started = Date.now();
  const result = await backfillLots(firestore(), {
    pageSize,
    onProgress: (progress) =>
      process.stdout.write(
        `[backfill:lots] ${progress.scanned} users scanned, ${progress.created} legacy lots created, ${progress.current} already in lots, ${progress.failed} failed (last ${progress.lastUid})\n`,
      ),
    onFailure: (uid, error) =>
      process.stderr.write(
        `[backfill:lots] ${uid}: ${error instanceof Error ? error.message.split("\n")[0] : String(error)}\n`,
      ),
  });
  process.stdout.write(
    `[backfill:lots] done in ${((Date.now() - started) / 1000).toFixed(1)} s: ${result.scanned} users, ${result.created} created, ${result.current} current, ${result.failed} failed\n`,
  );
  if (result.failed > 0) process.exitCode = 2;
}

main()
  .then(() => process.exit(process.exitCode ?? 0))
  .catch((error: unknown) => {
    process.stderr.write(`backfill failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  });
