/** A Plotly figure as pure data, displayable as Plotly's MIME type. */
import { Displayable, JUPYTER_DISPLAY, MimeBundle } from "../display";

export const PLOTLY_MIME = "application/vnd.plotly.v1+json";

export interface PlotlyFigureSpec {
  data: Record<string, unknown>[];
  layout: Record<string, unknown>;
}

export class PlotlyFigure implements Displayable {
  constructor(
    readonly data: Record<string, unknown>[],
    readonly layout: Record<string, unknown> = {},
    /** What a terminal or a text-only front end shows. */
    readonly summary = "Plotly figure",
  ) {}

  toJSON(): PlotlyFigureSpec {
    return { data: this.data, layout: this.layout };
  }

  toMimeBundle(): MimeBundle {
    return { [PLOTLY_MIME]: this.toJSON(), "text/plain": this.summary };
  }

  [JUPYTER_DISPLAY](): MimeBundle {
    return this.toMimeBundle();
  }
}
