/**
 * A table of runs against their metrics: HTML in notebooks, aligned text
 * elsewhere. With per-query metrics, each mean gets a 95% bootstrap
 * interval over queries, and each run a two-sided paired randomization
 * test against a named baseline (stats.ts); a difference that is not
 * significant at 0.05 is printed as such. Several seeds of one setting
 * (runs sharing a `group`) aggregate as mean ± sd. Runs scored on different
 * probe sets, or on different queries, are refused with one sentence.
 */
import { Displayable, JUPYTER_DISPLAY, MimeBundle } from "../display";
import { escapeHtml } from "../util/html";
import type { Metrics } from "./metrics";
import { bootstrapCI, mean, pairedRandomizationTest, sd } from "./stats";

export interface RunMetrics {
  name: string;
  metrics: Record<string, number>;
  /** Each query's metrics (evaluate's perQuery), for intervals and paired tests. */
  perQuery?: ReadonlyMap<string, Metrics>;
  /** The probe set the run was scored on (ProbeSet.id); runs on different sets are not compared. */
  probeId?: string;
  /** Runs of one setting with different seeds share a group; the table shows their mean ± sd. */
  group?: string;
  /**
   * A published figure, not a run here (e.g. PUBLISHED_SCIFACT): printed as
   * a reference line with its source, never tested, never marked best.
   */
  reference?: string;
}

/**
 * Published SciFact nDCG@10 (BERT-base scale, full corpus, test split), the
 * lines every SciFact table carries: BM25 from BEIR (Thakur et al. 2021,
 * Table 2) and RetroMAE from Xiao et al. 2022 (Table 3, zero-shot BEIR).
 */
export const PUBLISHED_SCIFACT: readonly RunMetrics[] = [
  { name: "BM25 (published)", metrics: { "NDCG@10": 0.665 }, reference: "BEIR, Thakur et al. 2021" },
  { name: "RetroMAE (published)", metrics: { "NDCG@10": 0.653 }, reference: "Xiao et al. 2022, BERT-base" },
];

export interface CompareOptions {
  /** The run (name) every other run is tested against. Default: none (no tests). */
  baseline?: string;
  /** Significance level for the "not significant" mark. Default 0.05. */
  alpha?: number;
  samples?: number;
  seed?: number;
}

export interface Cell {
  mean: number;
  ci?: [number, number];
  sd?: number;
  seeds?: number;
  /** Against the baseline: mean difference and p. */
  test?: { difference: number; p: number };
}

export interface Row {
  name: string;
  cells: Record<string, Cell | undefined>;
  /** The source of a published reference line. */
  reference?: string;
}

const fmt = (v: number) => v.toFixed(4);
const fmtP = (p: number) => (p < 0.001 ? "<0.001" : p.toFixed(3));

export class ComparisonTable implements Displayable {
  readonly runs: RunMetrics[];
  readonly columns: string[];
  readonly rows: Row[];
  readonly baseline: string | null;
  readonly alpha: number;

  constructor(runs: RunMetrics[], columns?: string[], options: CompareOptions = {}) {
    if (runs.length === 0) throw new Error("compare needs at least one run; pass [{ name, metrics }].");
    const probes = new Set(runs.filter((r) => !r.reference).map((r) => r.probeId).filter((p) => p !== undefined));
    if (probes.size > 1) throw new Error(`These runs were scored on different probe sets (${[...probes].join(", ")}); score every run on the same ProbeSet to compare them.`);
    this.runs = runs;
    this.columns = columns ?? [...new Set(runs.flatMap((r) => Object.keys(r.metrics)))];
    this.alpha = options.alpha ?? 0.05;
    this.baseline = options.baseline ?? null;
    const samples = options.samples ?? 10_000;
    const seed = options.seed ?? 0;
    // Group seeds of one setting; a run without a group is its own.
    const groups = new Map<string, RunMetrics[]>();
    for (const r of runs) groups.set(r.group ?? r.name, [...(groups.get(r.group ?? r.name) ?? []), r]);
    const base = this.baseline === null ? null : groups.get(this.baseline);
    if (this.baseline !== null && !base) throw new Error(`compare's baseline "${this.baseline}" is not one of the runs (${[...groups.keys()].join(", ")}); name a run or a group.`);
    const perQueryMean = (members: RunMetrics[], col: string, queries: string[]): Float64Array =>
      Float64Array.from(queries, (q) => mean(members.map((m) => m.perQuery!.get(q)?.[col] ?? NaN)));
    this.rows = [...groups].map(([name, members]) => {
      const cells: Record<string, Cell | undefined> = {};
      for (const col of this.columns) {
        const finals = members.map((m) => m.metrics[col]).filter((v) => v !== undefined);
        if (!finals.length) continue;
        const cell: Cell = { mean: mean(finals) };
        if (members.length > 1) {
          cell.sd = sd(finals);
          cell.seeds = members.length;
        }
        if (members.every((m) => m.perQuery && !m.reference)) {
          const queries = [...members[0].perQuery!.keys()];
          for (const m of members) checkSameQueries(m, members[0]);
          cell.ci = bootstrapCI(perQueryMean(members, col, queries), { samples, seed });
          if (base && name !== this.baseline && base.every((m) => m.perQuery)) {
            checkSameQueries(members[0], base[0]);
            cell.test = pairedRandomizationTest(perQueryMean(members, col, queries), perQueryMean(base, col, queries), { samples, seed });
          }
        }
        cells[col] = cell;
      }
      return members[0].reference ? { name, cells, reference: members[0].reference } : { name, cells };
    });
  }

  private best(col: string): number {
    return Math.max(...this.rows.filter((r) => !r.reference).map((r) => r.cells[col]?.mean ?? -Infinity));
  }

  /** "0.1234 [0.10, 0.14]", with ± sd over seeds, and the test against the baseline. */
  private text(row: Row, col: string): string {
    const c = row.cells[col];
    if (!c) return "–";
    let s = fmt(c.mean);
    if (c.sd !== undefined) s += ` ± ${fmt(c.sd)} (${c.seeds} seeds)`;
    if (c.ci) s += ` [${c.ci[0].toFixed(3)}, ${c.ci[1].toFixed(3)}]`;
    if (c.test) s += c.test.p < this.alpha ? ` p=${fmtP(c.test.p)}` : ` p=${fmtP(c.test.p)} n.s.`;
    return s;
  }

  toString(): string {
    const header = ["run", ...this.columns];
    const rows = this.rows.map((r) => [r.reference ? `${r.name}, ${r.reference}` : r.name, ...this.columns.map((c) => this.text(r, c) + (!r.reference && r.cells[c]?.mean === this.best(c) && this.rows.length > 1 ? "*" : ""))]);
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
    const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
    const notes = [
      this.rows.some((r) => Object.values(r.cells).some((c) => c?.ci)) ? "[lo, hi]: 95% bootstrap interval over queries." : "",
      this.baseline ? `p: two-sided paired randomization test against "${this.baseline}"; n.s. = not significant at ${this.alpha}.` : "",
      this.rows.length > 1 ? "*: the best run in its column (not a test)." : "",
    ].filter(Boolean);
    return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line), ...notes].join("\n");
  }

  toMimeBundle(): MimeBundle {
    const head = `<tr><th style="text-align:left">run</th>${this.columns.map((c) => `<th>${escapeHtml(c)}</th>`).join("")}</tr>`;
    const body = this.rows
      .map((r) => {
        const cells = this.columns.map((c) => {
          const v = r.cells[c];
          if (!v) return "<td>–</td>";
          const strong = !r.reference && v.mean === this.best(c) && this.rows.length > 1;
          const extra = escapeHtml(this.text(r, c).slice(fmt(v.mean).length));
          return `<td style="text-align:right">${strong ? "<b>" : ""}${fmt(v.mean)}${strong ? "</b>" : ""}<span style="color:#666">${extra}</span></td>`;
        });
        if (r.reference) return `<tr style="color:#666;font-style:italic"><td style="text-align:left">${escapeHtml(r.name)} <span style="font-size:11px">(${escapeHtml(r.reference)})</span></td>${cells.join("")}</tr>`;
        return `<tr><td style="text-align:left">${escapeHtml(r.name)}</td>${cells.join("")}</tr>`;
      })
      .join("");
    const notes = this.toString()
      .split("\n")
      .slice(this.rows.length + 2)
      .map((n) => (n.startsWith("*:") ? `bold${n.slice(1)}` : n));
    return { "text/html": `<table class="retromae-compare">${head}${body}</table>${notes.map((n) => `<div style="font-size:12px;color:#666">${escapeHtml(n)}</div>`).join("")}`, "text/plain": this.toString() };
  }

  /** The table as data: per run and metric, the mean, interval, sd over seeds and the test (for results.json). */
  toJSON(): { baseline: string | null; alpha: number; rows: Row[] } {
    return { baseline: this.baseline, alpha: this.alpha, rows: this.rows };
  }

  [JUPYTER_DISPLAY](): MimeBundle {
    return this.toMimeBundle();
  }
}

function checkSameQueries(a: RunMetrics, b: RunMetrics): void {
  const qa = a.perQuery!;
  const qb = b.perQuery!;
  if (qa.size !== qb.size || [...qa.keys()].some((q) => !qb.has(q))) {
    throw new Error(`"${a.name}" and "${b.name}" were scored on different queries (${qa.size} and ${qb.size}); a paired test needs the same query set for both.`);
  }
}

export function compare(runs: RunMetrics[], columns?: string[], options: CompareOptions = {}): ComparisonTable {
  return new ComparisonTable(runs, columns, options);
}
