/**
 * A table of runs against their metrics: HTML in notebooks, aligned text
 * elsewhere. The best value of each metric is marked.
 */
import { Displayable, JUPYTER_DISPLAY, MimeBundle } from "../display";
import { escapeHtml } from "../util/html";

export interface RunMetrics {
  name: string;
  metrics: Record<string, number>;
}

export class ComparisonTable implements Displayable {
  readonly runs: RunMetrics[];
  readonly columns: string[];

  constructor(runs: RunMetrics[], columns?: string[]) {
    if (runs.length === 0) throw new Error("compare needs at least one run; pass [{ name, metrics }].");
    this.runs = runs;
    this.columns = columns ?? [...new Set(runs.flatMap((r) => Object.keys(r.metrics)))];
  }

  private best(col: string): number {
    return Math.max(...this.runs.map((r) => r.metrics[col] ?? -Infinity));
  }

  toString(): string {
    const header = ["run", ...this.columns];
    const rows = this.runs.map((r) => [r.name, ...this.columns.map((c) => (r.metrics[c] === undefined ? "–" : r.metrics[c].toFixed(4) + (r.metrics[c] === this.best(c) && this.runs.length > 1 ? "*" : "")))]);
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
    const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
    return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line)].join("\n");
  }

  toMimeBundle(): MimeBundle {
    const head = `<tr><th style="text-align:left">run</th>${this.columns.map((c) => `<th>${escapeHtml(c)}</th>`).join("")}</tr>`;
    const body = this.runs
      .map((r) => {
        const cells = this.columns.map((c) => {
          const v = r.metrics[c];
          if (v === undefined) return "<td>–</td>";
          const strong = v === this.best(c) && this.runs.length > 1;
          return `<td style="text-align:right">${strong ? "<b>" : ""}${v.toFixed(4)}${strong ? "</b>" : ""}</td>`;
        });
        return `<tr><td style="text-align:left">${escapeHtml(r.name)}</td>${cells.join("")}</tr>`;
      })
      .join("");
    return { "text/html": `<table class="retromae-compare">${head}${body}</table>`, "text/plain": this.toString() };
  }

  [JUPYTER_DISPLAY](): MimeBundle {
    return this.toMimeBundle();
  }
}

export function compare(runs: RunMetrics[], columns?: string[]): ComparisonTable {
  return new ComparisonTable(runs, columns);
}
