/**
 * What the collator does to one text, for people tuning mask ratios:
 *
 * - the encoder input, each token marked masked ([MASK]), random (replaced by
 *   a random id) or kept (predicted but left as is);
 * - the decoder's attention mask, as a Plotly heatmap over the tokens (row i
 *   = what position i may see).
 *
 * Pure data: in a notebook `toMimeBundle()` gives HTML (token highlights and
 * a static grid of the mask) and `heatmap` is a Plotly figure; `show()`
 * displays both through lib's display interface; `toString()` is the
 * terminal form.
 */
import { display, Displayable, JUPYTER_DISPLAY, MimeBundle } from "../display";
import { PlotlyFigure } from "../plot/figure";
import { MaskKind, RetroMAEBatch } from "./batch";
import { escapeHtml } from "../util/html";

export interface PreviewToken {
  /** The original WordPiece token. */
  token: string;
  /** What the encoder sees at this position. */
  encoderInput: string;
  kind: "none" | "masked" | "random" | "kept";
}

const KIND_NAMES: PreviewToken["kind"][] = ["none", "masked", "random", "kept"];
const KIND_STYLE: Record<PreviewToken["kind"], string> = {
  none: "background:#f3f4f6;color:#111",
  masked: "background:#fde68a;color:#111",
  random: "background:#fca5a5;color:#111",
  kept: "background:#a7f3d0;color:#111",
};

export class MaskPreview implements Displayable {
  readonly tokens: PreviewToken[];
  /** [n][n]: 1 where row i may attend to j. */
  readonly decoderVisible: number[][];
  readonly encoderMaskRatio: number;
  readonly decoderMaskRatio: number;

  constructor(batch: RetroMAEBatch, tokenOf: (id: number) => string, ratios: { encoder: number; decoder: number }) {
    const n = batch.lengths[0];
    const L = batch.seqLength;
    this.encoderMaskRatio = ratios.encoder;
    this.decoderMaskRatio = ratios.decoder;
    this.tokens = Array.from({ length: n }, (_, i) => ({
      token: tokenOf(batch.decoderInputIds[i]),
      encoderInput: tokenOf(batch.encoderInputIds[i]),
      kind: KIND_NAMES[batch.encoderMaskKinds[i] as MaskKind],
    }));
    this.decoderVisible = Array.from({ length: n }, (_, i) => Array.from(batch.decoderAttentionMask.subarray(i * L, i * L + n)));
  }

  /** Counts of each encoder outcome, and the fraction of decoder cells hidden. */
  get stats(): { masked: number; random: number; kept: number; tokens: number; decoderHiddenFraction: number } {
    const count = (k: PreviewToken["kind"]) => this.tokens.filter((t) => t.kind === k).length;
    const n = this.tokens.length;
    const visible = this.decoderVisible.reduce((a, row) => a + row.reduce((x, y) => x + y, 0), 0);
    return { masked: count("masked"), random: count("random"), kept: count("kept"), tokens: n, decoderHiddenFraction: 1 - visible / (n * n) };
  }

  /** The decoder attention mask as a Plotly heatmap over the tokens. */
  get heatmap(): PlotlyFigure {
    const labels = this.tokens.map((t, i) => `${i}:${t.token}`);
    return new PlotlyFigure(
      [
        {
          type: "heatmap",
          z: this.decoderVisible,
          x: labels,
          y: labels,
          zmin: 0,
          zmax: 1,
          colorscale: [
            [0, "#1f2937"],
            [1, "#fde68a"],
          ],
          showscale: false,
          hovertemplate: "row %{y} sees %{x}: %{z}<extra></extra>",
        },
      ],
      {
        title: { text: `Decoder attention mask (ratio ${this.decoderMaskRatio}): row i sees the light cells` },
        xaxis: { title: { text: "key position" }, tickangle: -60, automargin: true },
        yaxis: { title: { text: "query position" }, autorange: "reversed", automargin: true },
        height: Math.min(900, 200 + 14 * this.tokens.length),
      },
      this.decoderText(),
    );
  }

  private encoderHtml(): string {
    const spans = this.tokens
      .map((t) => {
        const title = t.kind === "none" ? escapeHtml(t.token) : `${t.kind}: ${escapeHtml(t.token)} → ${escapeHtml(t.encoderInput)}`;
        const shown = t.kind === "random" ? `${escapeHtml(t.encoderInput)} <s>${escapeHtml(t.token)}</s>` : escapeHtml(t.encoderInput);
        return `<span title="${title}" style="${KIND_STYLE[t.kind]};padding:1px 4px;margin:1px;border-radius:3px;display:inline-block;font-family:monospace">${shown}</span>`;
      })
      .join("");
    const s = this.stats;
    const legend = (["masked", "random", "kept"] as const)
      .map((k) => `<span style="${KIND_STYLE[k]};padding:1px 4px;border-radius:3px">${k} ${s[k]}</span>`)
      .join(" ");
    return `<div><div style="margin-bottom:4px"><b>Encoder input</b> (ratio ${this.encoderMaskRatio}): ${legend} of ${s.tokens} tokens</div><div style="line-height:1.9">${spans}</div></div>`;
  }

  private gridHtml(): string {
    const n = this.tokens.length;
    const cell = n > 64 ? 6 : 10;
    const cells = this.decoderVisible
      .map((row) => row.map((v) => `<div style="width:${cell}px;height:${cell}px;background:${v ? "#fde68a" : "#1f2937"}"></div>`).join(""))
      .join("");
    return `<div style="margin-top:8px"><b>Decoder attention mask</b> (ratio ${this.decoderMaskRatio}; ${(this.stats.decoderHiddenFraction * 100).toFixed(0)}% hidden; row i = what token i sees)<div style="display:grid;grid-template-columns:repeat(${n},${cell}px);gap:1px;margin-top:4px">${cells}</div></div>`;
  }

  toMimeBundle(): MimeBundle {
    return { "text/html": this.encoderHtml() + this.gridHtml(), "text/plain": this.toString() };
  }

  [JUPYTER_DISPLAY](): MimeBundle {
    return this.toMimeBundle();
  }

  /** Show the encoder highlights and the interactive Plotly heatmap as two outputs. */
  show(): void {
    display({ "text/html": this.encoderHtml(), "text/plain": this.encoderText() });
    display(this.heatmap);
  }

  private encoderText(): string {
    const mark: Record<PreviewToken["kind"], (t: PreviewToken) => string> = {
      none: (t) => t.token,
      masked: (t) => `[${t.token}→MASK]`,
      random: (t) => `[${t.token}→${t.encoderInput}]`,
      kept: (t) => `[${t.token}=kept]`,
    };
    const s = this.stats;
    return `encoder (ratio ${this.encoderMaskRatio}): ${s.masked} masked, ${s.random} random, ${s.kept} kept of ${s.tokens}\n${this.tokens.map((t) => mark[t.kind](t)).join(" ")}`;
  }

  private decoderText(): string {
    const rows = this.decoderVisible.map((row, i) => `${String(i).padStart(3)} ${row.map((v) => (v ? "#" : ".")).join("")}  ${this.tokens[i].token}`);
    return `decoder attention (ratio ${this.decoderMaskRatio}; # = visible, row i = what token i sees)\n${rows.join("\n")}`;
  }

  toString(): string {
    return `${this.encoderText()}\n${this.decoderText()}`;
  }
}
