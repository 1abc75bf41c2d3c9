/** Where this package is installed, from source (kernel/) or from the build (dist/kernel/). */
import * as path from "path";

export const PACKAGE_ROOT = path.resolve(__dirname, __dirname.includes(`${path.sep}dist${path.sep}`) ? "../.." : "..");
