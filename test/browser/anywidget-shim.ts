/**
 * anywidget's front-end build is an AMD module (`define(["@jupyter-widgets/base"], factory)`),
 * as JupyterLab's extension loader expects. For the test page's bundle, `define`
 * takes the factory and keeps what it makes: the AnyModel and AnyView classes.
 */
import * as base from "@jupyter-widgets/base";

export const anywidgetModule: { exports: Record<string, unknown> | null } = { exports: null };
(globalThis as unknown as { define: unknown }).define = (_deps: string[], factory: (b: typeof base) => Record<string, unknown>) => {
  anywidgetModule.exports = factory(base);
};
