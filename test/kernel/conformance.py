"""Debian's jupyter_kernel_test (0.4.5) against the real kernel process.

Run by test/kernel/conformance.test.ts with JUPYTER_PATH pointing at a
kernelspec installed by `retromae kernel install --prefix`.
"""
import unittest

import jupyter_kernel_test


class RetroMAEKernelTests(jupyter_kernel_test.KernelTests):
    kernel_name = "retromae"
    language_name = "typescript"
    file_extension = ".ts"

    code_hello_world = 'console.log("hello, world")'
    code_stderr = 'console.error("an error line")'

    completion_samples = [
        {"text": "Math.ab", "matches": {"abs"}},
        {"text": "const zebraCount = 1;\nzebraC", "matches": {"zebraCount"}},
        {"text": "[1, 2].fil", "matches": {"fill", "filter"}},
    ]

    complete_code_samples = ["1", 'console.log("hi")', "const a = 1;", "function f() {}\n", "for (const x of [1]) {\n  x;\n}"]
    incomplete_code_samples = ["for (let i = 0; i < 2; i++) {", "foo(", "`abc", "const x = [1,", "1 +"]
    invalid_code_samples = ["const = 5", "}", "1 +* 2", "const x = ;", "if (x) } else {"]

    code_page_something = "?console.log"

    code_generate_error = 'throw new Error("boom")'

    code_execute_result = [
        {"code": "6 * 7", "result": "42"},
        {"code": '"a" + "b"', "result": "'ab'"},
        {"code": "[1, 2, 3].map((x) => x * 2)", "result": "[ 2, 4, 6 ]"},
        {"code": "({ toMimeBundle: () => ({ 'text/plain': 'custom', 'text/html': '<i>custom</i>' }) })", "mime": "text/html"},
        {"code": "({ [Symbol.for('Jupyter.display')]: () => ({ 'text/markdown': '**md**' }) })", "mime": "text/markdown"},
    ]

    code_display_data = [
        {"code": 'display.html("<b>bold</b>")', "mime": "text/html"},
        {"code": 'display.markdown("# Title")', "mime": "text/markdown"},
        {"code": "display.json({ a: 1 })", "mime": "application/json"},
        {"code": 'display.svg("<svg xmlns=\'http://www.w3.org/2000/svg\'></svg>")', "mime": "image/svg+xml"},
        {"code": "display.plotly({ data: [{ y: [1, 2, 3] }] })", "mime": "application/vnd.plotly.v1+json"},
        {"code": "display.png(new Uint8Array([137, 80, 78, 71]))", "mime": "image/png"},
    ]

    code_history_pattern = "6 * 7"
    supported_history_operations = ("tail", "range", "search")

    code_inspect_sample = "console.log"

    code_clear_output = "clearOutput()"


if __name__ == "__main__":
    unittest.main()
