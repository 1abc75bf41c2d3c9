"""Run a unittest module and print one JSON line per test (subtests included),
so the uvu wrapper can report each as its own test. Usage:
  python3 run_unittest.py MODULE [TestClass.test_name ...]
"""
import json
import sys
import time
import unittest


class JsonResult(unittest.TestResult):
    def __init__(self):
        super().__init__()
        self.records = []
        self._start = {}

    def startTest(self, test):
        super().startTest(test)
        self._start[test.id()] = time.time()
        self._failed_sub = False

    def _record(self, name, ok, detail=""):
        self.records.append({"name": name, "ok": ok, "detail": detail})
        print(json.dumps(self.records[-1]), flush=True)

    def addSuccess(self, test):
        if not self._failed_sub:
            self._record(test.id(), True, f"{time.time() - self._start[test.id()]:.1f}s")

    def addFailure(self, test, err):
        self._record(test.id(), False, self._exc_info_to_string(err, test))

    def addError(self, test, err):
        self._record(test.id(), False, self._exc_info_to_string(err, test))

    def addSkip(self, test, reason):
        self._record(test.id(), False, f"skipped: {reason}")

    def addSubTest(self, test, subtest, err):
        if err is not None:
            self._failed_sub = True
            self._record(subtest.id(), False, self._exc_info_to_string(err, test))


if __name__ == "__main__":
    module = sys.argv[1]
    loader = unittest.TestLoader()
    names = sys.argv[2:]
    suite = loader.loadTestsFromNames([f"{module}.{n}" for n in names]) if names else loader.loadTestsFromName(module)
    result = JsonResult()
    suite.run(result)
