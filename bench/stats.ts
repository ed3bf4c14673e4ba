/** Small statistics and the table every benchmark scenario prints. */

export interface Row {
  scenario: string;
  name: string;
  value: number;
  unit: string;
  /** value ÷ the floor measured in the same run (for "higher is better" units, floor ÷ value is not used: ratio is value/floor). */
  ratio?: number;
  target?: string;
  pass?: boolean;
  note?: string;
}

export function median(values: number[]): number {
  return percentile(values, 50);
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[rank];
}

export function printRows(rows: Row[]): void {
  const fmt = (value: number) => (value >= 100 ? value.toFixed(0) : value.toFixed(1));
  const lines = rows.map((row) => [
    row.scenario,
    row.name,
    `${fmt(row.value)} ${row.unit}`,
    row.ratio === undefined ? "" : `${row.ratio.toFixed(2)}×`,
    row.target ?? "",
    row.pass === undefined ? "" : row.pass ? "ok" : "MISS",
    row.note ?? "",
  ]);
  const header = ["scenario", "name", "value", "ratio", "target", "", "note"];
  const widths = header.map((title, column) => Math.max(title.length, ...lines.map((line) => line[column].length)));
  const render = (cells: string[]) =>
    cells
      .map((cell, column) => cell.padEnd(widths[column]))
      .join("  ")
      .trimEnd();
  process.stdout.write(`${render(header)}\n${widths.map((width) => "-".repeat(width)).join("  ")}\n`);
  for (const line of lines) process.stdout.write(`${render(line)}\n`);
}
