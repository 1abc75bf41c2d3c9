/**
 * This package's own MIME types, shared by the library (which displays
 * them) and the kernel's clients (which read them) without loading the
 * engine.
 */

/**
 * Marks a display as a progress bar: { step, totalSteps, status, text }.
 * `retromae run` prints it in the terminal; notebook front ends, which do
 * not know it, show the HTML beside it.
 */
export const PROGRESS_MIME = "application/vnd.retromae.progress+json";

export interface ProgressData {
  step: number;
  totalSteps: number;
  /** "running", "done", "stopped", or an error sentence. */
  status: string;
  /** The one-line text form. */
  text: string;
}
