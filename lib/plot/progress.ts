/** Progress of a fit as pure data: an HTML bar for notebooks, a line for terminals. */
import { escapeHtml } from "../util/html";
import { PROGRESS_MIME, ProgressData } from "../util/mime";

export interface ProgressState {
  step: number;
  totalSteps: number;
  elapsedMs: number;
  tokensPerSec: number;
  loss: number | null;
  encoderLoss?: number;
  decoderLoss?: number;
  /** "running", "done", "stopped" (interrupt), or an error sentence. */
  status: string;
}

export function formatDuration(ms: number): string {
  if (!Number.isFinite(ms) || ms < 0) return "?";
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

export function etaMs(p: ProgressState): number {
  return p.step > 0 ? (p.elapsedMs / p.step) * (p.totalSteps - p.step) : NaN;
}

function lossText(p: ProgressState): string {
  if (p.loss === null) return "";
  // an MLM-only run has no decoder loss: show the encoder's alone, never "dec NaN"
  const dec = p.decoderLoss !== undefined && Number.isFinite(p.decoderLoss) ? `, dec ${p.decoderLoss.toFixed(3)}` : "";
  const parts = p.encoderLoss !== undefined && Number.isFinite(p.encoderLoss) ? ` (enc ${p.encoderLoss.toFixed(3)}${dec})` : "";
  return `loss ${p.loss.toFixed(4)}${parts}`;
}

export function progressText(p: ProgressState, width = 24): string {
  const frac = p.totalSteps > 0 ? Math.min(1, p.step / p.totalSteps) : 0;
  const filled = Math.round(frac * width);
  const bar = "=".repeat(filled) + (filled < width ? ">" : "") + " ".repeat(Math.max(0, width - filled - 1));
  const tail = p.status === "running" ? `ETA ${formatDuration(etaMs(p))}` : `${p.status} after ${formatDuration(p.elapsedMs)}`;
  return `step ${p.step}/${p.totalSteps} [${bar}] ${(frac * 100).toFixed(0)}% ${tail} | ${Math.round(p.tokensPerSec)} tok/s | ${lossText(p)}`;
}

export function progressHtml(p: ProgressState): string {
  const frac = p.totalSteps > 0 ? Math.min(1, p.step / p.totalSteps) : 0;
  const color = p.status === "running" || p.status === "done" ? "#2563eb" : p.status === "stopped" ? "#d97706" : "#dc2626";
  const tail = p.status === "running" ? `ETA ${formatDuration(etaMs(p))}` : `${p.status} after ${formatDuration(p.elapsedMs)}`;
  return (
    `<div style="font-family:monospace;font-size:13px">` +
    `<div style="width:320px;height:10px;background:#e5e7eb;border-radius:5px;display:inline-block;vertical-align:middle">` +
    `<div style="width:${(frac * 100).toFixed(1)}%;height:100%;background:${color};border-radius:5px"></div></div> ` +
    `step ${p.step}/${p.totalSteps} · ${escapeHtml(tail)} · ${Math.round(p.tokensPerSec)} tok/s · ${escapeHtml(lossText(p))}</div>`
  );
}

/** The display bundle of a progress state: HTML, text, and the state itself under PROGRESS_MIME. */
export function progressBundle(p: ProgressState): Record<string, unknown> {
  return {
    "text/html": progressHtml(p),
    "text/plain": progressText(p),
    [PROGRESS_MIME]: { step: p.step, totalSteps: p.totalSteps, status: p.status, text: progressText(p) } satisfies ProgressData,
  };
}
