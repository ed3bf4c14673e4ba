/**
 * The server-side price book: feature → credits per unit.
 *
 * Prices never come from the client. Amounts are whole credits, so totals are
 * exact integers (no floating-point money).
 */
export const PRICE_BOOK: Readonly<Record<string, number>> = Object.freeze({
  "chat.message": 1,
  "chat.long_context": 3,
  "image.generate": 10,
  "embedding.1k_tokens": 1,
  "tts.1k_chars": 2,
  "podcast.minute": 5,
  "report.page": 4,
});

/** Largest quantity one request may meter; keeps totals far inside safe integers. */
export const MAX_QUANTITY = 100_000;

export function isKnownFeature(feature: string): boolean {
  return Object.prototype.hasOwnProperty.call(PRICE_BOOK, feature);
}

/** Credits for `quantity` units of `feature`; callers validate the feature first. */
export function priceOf(feature: string, quantity: number): number {
  const unit = PRICE_BOOK[feature];
  if (unit === undefined) throw new Error(`unknown feature ${feature}`);
  return unit * quantity;
}
