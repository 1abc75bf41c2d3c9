/**
 * The notebook format (nbformat 4) as the runner, the HTML report and the
 * notebook builder see it: types, reading with one sentence per problem,
 * and a cell's source as text.
 */
import * as fs from "fs";

export interface NotebookCell {
  cell_type: "code" | "markdown" | "raw";
  id?: string;
  source: string | string[];
  metadata: Record<string, unknown> & { tags?: string[] };
  execution_count?: number | null;
  outputs?: Output[];
}

export interface Notebook {
  cells: NotebookCell[];
  metadata: Record<string, unknown>;
  nbformat: number;
  nbformat_minor: number;
}

export type Output = Record<string, unknown> & { output_type: string };

export class RunError extends Error {}

export const source = (c: NotebookCell): string => (Array.isArray(c.source) ? c.source.join("") : c.source);

export function readNotebook(file: string): Notebook {
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch {
    throw new RunError(`Notebook ${file} does not exist or cannot be read.`);
  }
  let nb: Notebook;
  try {
    nb = JSON.parse(text);
  } catch (e) {
    throw new RunError(`Notebook ${file} is not valid JSON (${(e as Error).message}); open it in Jupyter to repair it.`);
  }
  if (!nb || !Array.isArray(nb.cells) || typeof nb.nbformat !== "number") throw new RunError(`${file} is JSON but not a notebook (no cells or nbformat).`);
  if (nb.nbformat < 4) throw new RunError(`${file} is nbformat ${nb.nbformat}; save it as nbformat 4 first.`);
  return nb;
}
