/**
 * The text/html fallback for Plotly figures, so charts render where no Plotly
 * renderer is installed (classic Notebook, nbconvert HTML, JupyterLab without
 * the plotly extension) and work offline: plotly.js from plotly.js-dist is
 * embedded once per kernel session, gzip-compressed, and each figure waits for it.
 */
import * as fs from "fs";
import * as zlib from "zlib";

export const PLOTLY_MIME = "application/vnd.plotly.v1+json";
const READY_EVENT = "retromae-plotly-ready";

let loader: string | null = null;

/** The one-time output that defines window.Plotly (about 2.5 MB: plotly.js gzip + base64). */
export function plotlyLoaderHtml(): string {
  if (loader) return loader;
  const source = fs.readFileSync(require.resolve("plotly.js-dist"));
  // gzip's default level: 1.94 MB in 0.2 s here, where level 9 took 0.58 s, for every kernel's first chart, to save 18 KB
  const b64 = zlib.gzipSync(source).toString("base64");
  loader =
    `<div class="retromae-plotly-loader" style="display:none">plotly.js</div>` +
    `<script type="text/javascript">(function(){if(window.Plotly){window.dispatchEvent(new Event("${READY_EVENT}"));return;}` +
    `if(window.__retromaePlotlyLoading)return;window.__retromaePlotlyLoading=true;` +
    `var b=atob("${b64}");var u=new Uint8Array(b.length);for(var i=0;i<b.length;i++)u[i]=b.charCodeAt(i);` +
    `new Response(new Blob([u]).stream().pipeThrough(new DecompressionStream("gzip"))).text().then(function(t){` +
    `var d=window.define;window.define=undefined;var s=document.createElement("script");s.text=t;document.head.appendChild(s);window.define=d;` +
    `window.dispatchEvent(new Event("${READY_EVENT}"));});})();</script>`;
  return loader;
}

let divCounter = 0;

/** A div and a script that draws the figure once plotly.js is there. */
export function plotlyFigureHtml(figure: { data?: unknown; layout?: unknown; config?: unknown }): string {
  const id = `retromae-plot-${process.pid}-${Date.now().toString(36)}-${divCounter++}`;
  const spec = JSON.stringify({ data: figure.data ?? [], layout: figure.layout ?? {}, config: { responsive: true, ...((figure.config as object) ?? {}) } }).replace(/</g, "\\u003c");
  return (
    `<div id="${id}" class="retromae-plotly" style="width:100%;min-height:360px"></div>` +
    `<script type="text/javascript">(function(){var f=${spec};function draw(){var el=document.getElementById("${id}");if(el)window.Plotly.react(el,f.data,f.layout,f.config);}` +
    `if(window.Plotly)draw();else window.addEventListener("${READY_EVENT}",draw,{once:true});})();</script>`
  );
}
