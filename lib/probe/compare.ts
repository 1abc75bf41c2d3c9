/**
 * A table of runs against their metrics: HTML in notebooks, aligned text
 * elsewhere. With per-query metrics, each mean gets a 95% bootstrap
 * interval over queries, and each run a two-sided paired randomization
 * test against each named baseline (stats.ts: one baseline prints its p
 * beside each mean, several get a column of differences and p each); a
 * difference that is not significant at 0.05 is printed as such, and
 * `findings` words every comparison as a sentence. Several seeds of one setting
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
  /**
   * The run (name or group) every other run is tested against, or several
   * (e.g. ["start", "untrained", "MLM-only"]): each run then gets a paired
   * test against each. Default: none (no tests).
   */
  baseline?: string | readonly string[];
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
  /** Against the (first) baseline: mean difference (this run minus the baseline) and p. */
  test?: Test;
  /** Against each baseline, by its name. */
  tests?: Record<string, Test>;
}

export interface Row {
  name: string;
  cells: Record<string, Cell | undefined>;
  /** The source of a published reference line. */
  reference?: string;
}

export interface Test {
  difference: number;
  p: number;
}

const fmt = (v: number) => v.toFixed(4);
const fmtP = (p: number) => (p < 0.001 ? "<0.001" : p.toFixed(3));

export class ComparisonTable implements Displayable {
  readonly runs: RunMetrics[];
  readonly columns: string[];
  readonly rows: Row[];
  /** The first baseline (null without one). */
  readonly baseline: string | null;
  readonly baselines: string[];
  readonly alpha: number;

  constructor(runs: RunMetrics[], columns?: string[], options: CompareOptions = {}) {
    if (runs.length === 0) throw new Error("compare needs at least one run; pass [{ name, metrics }].");
    const probes = new Set(runs.filter((r) => !r.reference).map((r) => r.probeId).filter((p) => p !== undefined));
    if (probes.size > 1) throw new Error(`These runs were scored on different probe sets (${[...probes].join(", ")}); score every run on the same ProbeSet to compare them.`);
    this.runs = runs;
    this.columns = columns ?? [...new Set(runs.flatMap((r) => Object.keys(r.metrics)))];
    this.alpha = options.alpha ?? 0.05;
    this.baselines = options.baseline === undefined ? [] : typeof options.baseline === "string" ? [options.baseline] : [...options.baseline];
    if (new Set(this.baselines).size !== this.baselines.length) throw new Error(`compare's baselines name a run twice (${this.baselines.join(", ")}); name each once.`);
    this.baseline = this.baselines[0] ?? null;
    const samples = options.samples ?? 10_000;
    const seed = options.seed ?? 0;
    // Group seeds of one setting; a run without a group is its own.
    const groups = new Map<string, RunMetrics[]>();
    for (const r of runs) groups.set(r.group ?? r.name, [...(groups.get(r.group ?? r.name) ?? []), r]);
    const bases = this.baselines.map((b) => {
      const members = groups.get(b);
      if (!members) throw new Error(`compare's baseline "${b}" is not one of the runs (${[...groups.keys()].join(", ")}); name a run or a group.`);
      return [b, members] as const;
    });
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
          for (const [b, base] of bases) {
            if (name === b || !base.every((m) => m.perQuery && !m.reference)) continue;
            checkSameQueries(members[0], base[0]);
            const t = pairedRandomizationTest(perQueryMean(members, col, queries), perQueryMean(base, col, queries), { samples, seed });
            (cell.tests ??= {})[b] = t;
            if (b === this.baseline) cell.test = t;
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

  /** "0.1234 [0.10, 0.14]", with ± sd over seeds, and (one baseline) the test against it. */
  private text(row: Row, col: string): string {
    const c = row.cells[col];
    if (!c) return "–";
    let s = fmt(c.mean);
    if (c.sd !== undefined) s += ` ± ${fmt(c.sd)} (${c.seeds} seeds)`;
    if (c.ci) s += ` [${c.ci[0].toFixed(3)}, ${c.ci[1].toFixed(3)}]`;
    if (c.test && this.baselines.length === 1) s += c.test.p < this.alpha ? ` p=${fmtP(c.test.p)}` : ` p=${fmtP(c.test.p)} n.s.`;
    return s;
  }

  /** "+0.0656 p<0.001", "−0.0070 p=0.238 n.s.", or "–" (the baseline itself, or no test). */
  private testText(row: Row, col: string, baseline: string): string {
    const t = row.cells[col]?.tests?.[baseline];
    if (!t) return "–";
    const d = `${t.difference >= 0 ? "+" : "−"}${fmt(Math.abs(t.difference))}`;
    return `${d} p${t.p < 0.001 ? "<0.001" : `=${fmtP(t.p)}`}${t.p < this.alpha ? "" : " n.s."}`;
  }

  /** The table's columns: each metric, then (with several baselines) one column of tests per baseline. */
  private layout(): { header: string; metric: string; baseline?: string }[] {
    return this.columns.flatMap((c) => [{ header: c, metric: c }, ...(this.baselines.length > 1 ? this.baselines.map((b) => ({ header: `${c} vs ${b}`, metric: c, baseline: b })) : [])]);
  }

  private isBest(row: Row, col: string): boolean {
    return !row.reference && row.cells[col]?.mean === this.best(col) && this.rows.length > 1;
  }

  private notes(): string[] {
    const tested = this.baselines.length === 1 ? `p: two-sided paired randomization test against "${this.baseline}"; n.s. = not significant at ${this.alpha}.` : `"vs": the difference from each baseline (run minus baseline) and p, a two-sided paired randomization test; n.s. = not significant at ${this.alpha}.`;
    return [
      this.rows.some((r) => Object.values(r.cells).some((c) => c?.ci)) ? "[lo, hi]: 95% bootstrap interval over queries." : "",
      this.baselines.length ? tested : "",
      this.rows.length > 1 ? "*: the best run in its column (not a test)." : "",
    ].filter(Boolean);
  }

  toString(): string {
    const cols = this.layout();
    const header = ["run", ...cols.map((c) => c.header)];
    const rows = this.rows.map((r) => [
      r.reference ? `${r.name}, ${r.reference}` : r.name,
      ...cols.map((c) => (c.baseline ? this.testText(r, c.metric, c.baseline) : this.text(r, c.metric) + (this.isBest(r, c.metric) ? "*" : ""))),
    ]);
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
    const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
    return [line(header), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(line), ...this.notes()].join("\n");
  }

  toMimeBundle(): MimeBundle {
    const cols = this.layout();
    const head = `<tr><th style="text-align:left">run</th>${cols.map((c) => `<th>${escapeHtml(c.header)}</th>`).join("")}</tr>`;
    const body = this.rows
      .map((r) => {
        const cells = cols.map((c) => {
          if (c.baseline) {
            const t = r.cells[c.metric]?.tests?.[c.baseline];
            return `<td style="text-align:right${t && t.p >= this.alpha ? ";color:#666" : ""}">${escapeHtml(this.testText(r, c.metric, c.baseline))}</td>`;
          }
          const v = r.cells[c.metric];
          if (!v) return "<td>–</td>";
          const strong = this.isBest(r, c.metric);
          const extra = escapeHtml(this.text(r, c.metric).slice(fmt(v.mean).length));
          return `<td style="text-align:right">${strong ? "<b>" : ""}${fmt(v.mean)}${strong ? "</b>" : ""}<span style="color:#666">${extra}</span></td>`;
        });
        if (r.reference) return `<tr style="color:#666;font-style:italic"><td style="text-align:left">${escapeHtml(r.name)} <span style="font-size:11px">(${escapeHtml(r.reference)})</span></td>${cells.join("")}</tr>`;
        return `<tr><td style="text-align:left">${escapeHtml(r.name)}</td>${cells.join("")}</tr>`;
      })
      .join("");
    const notes = this.notes().map((n) => (n.startsWith("*:") ? `bold${n.slice(1)}` : n));
    return { "text/html": `<table class="retromae-compare">${head}${body}</table>${notes.map((n) => `<div style="font-size:12px;color:#666">${escapeHtml(n)}</div>`).join("")}`, "text/plain": this.toString() };
  }

  /**
   * Each tested comparison in one sentence, in the words the notebooks use:
   * "<run> is above <baseline> by 0.0656 NDCG@10 (p = 0.0001): significant
   * at 0.05." `runs` (default: every tested run) says whose comparisons to
   * state; a pair already stated the other way round is not repeated.
   * `names` renames runs in the sentences (e.g. { "start (starter-tiny)": "the start" }).
   */
  findings(metric: string, options: { runs?: readonly string[]; names?: Record<string, string> } = {}): string[] {
    if (!this.columns.includes(metric)) throw new Error(`findings: "${metric}" is not a column of this table (${this.columns.join(", ")}); name one of them.`);
    const known = new Set(this.rows.map((r) => r.name));
    for (const r of options.runs ?? []) if (!known.has(r)) throw new Error(`findings: "${r}" is not one of the runs (${[...known].join(", ")}); name a run or a group.`);
    const named = (n: string) => options.names?.[n] ?? n;
    const stated = new Set<string>();
    const out: string[] = [];
    const rows = options.runs ? options.runs.map((n) => this.rows.find((r) => r.name === n)!) : this.rows;
    for (const row of rows) {
      for (const b of this.baselines) {
        const t = row.cells[metric]?.tests?.[b];
        if (!t || stated.has(`${b}\u0000${row.name}`)) continue;
        stated.add(`${row.name}\u0000${b}`);
        const dir = t.difference > 0 ? "above" : t.difference < 0 ? "below" : "level with";
        out.push(`${named(row.name)} is ${dir} ${named(b)} by ${Math.abs(t.difference).toFixed(4)} ${metric} (p = ${t.p.toFixed(4)}): ${t.p < this.alpha ? "significant" : "not significant"} at ${this.alpha}.`);
      }
    }
    return out;
  }

  /** The table as data: per run and metric, the mean, interval, sd over seeds and the test (for results.json). */
  toJSON(): { baseline: string | null; baselines: string[]; alpha: number; rows: Row[] } {
    return { baseline: this.baseline, baselines: this.baselines, alpha: this.alpha, rows: this.rows };
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
