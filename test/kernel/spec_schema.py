"""Strict checks of every message the kernel sends, against the Jupyter
messaging spec (5.5: with 5.4's iopub_welcome and supported_features): header fields, parent header,
and each msg_type's content fields with their types and enums. Stricter than
jupyter_kernel_test's schemas, which it treats as a floor: a field of the
wrong type, a missing required field, a value outside its enum or an unknown
msg_type fails.

protocol_checks.py wraps its client's get_*_msg so that every message any
test reads is checked.
"""
import re

STR, INT, BOOL, DICT, LIST = str, int, bool, dict, list
DATE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:?\d{2})$")


class SpecError(AssertionError):
    pass


def check(cond, where, what):
    if not cond:
        raise SpecError(f"{where}: {what}")


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def typed(v, t):
    if t is INT:
        return is_int(v)
    if t is BOOL:
        return isinstance(v, bool)
    return isinstance(v, t)


def fields(obj, where, required=(), optional=(), closed=False):
    """required/optional: (name, type or tuple of allowed values or callable)."""
    check(isinstance(obj, dict), where, f"is {type(obj).__name__}, not an object")
    for name, spec in required:
        check(name in obj, where, f"lacks the required field {name!r}")
    for name, spec in list(required) + list(optional):
        if name not in obj:
            continue
        v = obj[name]
        if isinstance(spec, tuple):
            check(v in spec, where, f"{name}={v!r} is not one of {spec}")
        elif callable(spec) and not isinstance(spec, type):
            spec(v, f"{where}.{name}")
        else:
            check(typed(v, spec), where, f"{name} is {type(v).__name__}, not {spec.__name__}")
    if closed:
        extra = set(obj) - {n for n, _ in required} - {n for n, _ in optional}
        check(not extra, where, f"has fields the spec does not define: {sorted(extra)}")


def str_list(v, where):
    check(isinstance(v, list) and all(isinstance(x, str) for x in v), where, "is not a list of strings")


def mime_bundle(v, where):
    check(isinstance(v, dict) and all(isinstance(k, str) and "/" in k for k in v), where, "is not a MIME bundle (keys must be MIME types)")


def codemirror_mode(v, where):
    if isinstance(v, str):
        return
    fields(v, where, [("name", STR)], [("version", INT)], closed=True)


def transient(v, where):
    fields(v, where, [], [("display_id", STR)])


ERROR = [("ename", STR), ("evalue", STR), ("traceback", str_list)]


def reply_status(c, where, ok_fields=(), ok_optional=()):
    check(c.get("status") in ("ok", "error", "aborted"), where, f"status={c.get('status')!r}")
    if c["status"] == "ok":
        fields(c, where, [("status", STR)] + list(ok_fields), list(ok_optional))
    elif c["status"] == "error":
        fields(c, where, [("status", STR)] + ERROR)


def history_entry(v, where):
    check(isinstance(v, list) and len(v) == 3 and is_int(v[0]) and is_int(v[1]), where, f"{v!r} is not [session, line, input]")
    x = v[2]
    check(isinstance(x, str) or (isinstance(x, list) and len(x) == 2 and isinstance(x[0], str) and (x[1] is None or isinstance(x[1], str))), where, f"{x!r} is not input or [input, output]")


def history(v, where):
    check(isinstance(v, list), where, "is not a list")
    for i, e in enumerate(v):
        history_entry(e, f"{where}[{i}]")


def user_expressions(v, where):
    check(isinstance(v, dict), where, "is not an object")
    for k, r in v.items():
        w = f"{where}.{k}"
        check(r.get("status") in ("ok", "error"), w, f"status={r.get('status')!r}")
        if r["status"] == "ok":
            fields(r, w, [("status", STR), ("data", mime_bundle), ("metadata", DICT)])
        else:
            fields(r, w, [("status", STR)] + ERROR)


def language_info(v, where):
    fields(v, where, [("name", STR), ("version", STR), ("mimetype", STR), ("file_extension", STR)], [("pygments_lexer", STR), ("codemirror_mode", codemirror_mode), ("nbconvert_exporter", STR)])


def help_links(v, where):
    check(isinstance(v, list), where, "is not a list")
    for i, l in enumerate(v):
        fields(l, f"{where}[{i}]", [("text", STR), ("url", STR)], closed=True)


def comms(v, where):
    check(isinstance(v, dict), where, "is not an object")
    for k, c in v.items():
        fields(c, f"{where}.{k}", [("target_name", STR)])


def content_check(msg_type, c, where):
    if msg_type == "status":
        fields(c, where, [("execution_state", ("busy", "idle", "starting"))])
    elif msg_type == "stream":
        fields(c, where, [("name", ("stdout", "stderr")), ("text", STR)])
    elif msg_type == "execute_input":
        fields(c, where, [("code", STR), ("execution_count", INT)])
    elif msg_type == "execute_result":
        fields(c, where, [("execution_count", INT), ("data", mime_bundle), ("metadata", DICT)], [("transient", transient)])
    elif msg_type == "display_data":
        fields(c, where, [("data", mime_bundle), ("metadata", DICT)], [("transient", transient)])
    elif msg_type == "update_display_data":
        fields(c, where, [("data", mime_bundle), ("metadata", DICT), ("transient", transient)])
        check("display_id" in c["transient"], where, "update_display_data without transient.display_id")
    elif msg_type == "clear_output":
        fields(c, where, [("wait", BOOL)])
    elif msg_type == "error":
        fields(c, where, ERROR)
    elif msg_type == "comm_open":
        fields(c, where, [("comm_id", STR), ("target_name", STR), ("data", DICT)], [("target_module", STR)])
    elif msg_type in ("comm_msg", "comm_close"):
        fields(c, where, [("comm_id", STR), ("data", DICT)])
    elif msg_type == "iopub_welcome":
        fields(c, where, [("subscription", STR)])
    elif msg_type == "input_request":
        fields(c, where, [("prompt", STR), ("password", BOOL)])
    elif msg_type == "execute_reply":
        reply_status(c, where, [("execution_count", INT), ("user_expressions", user_expressions), ("payload", LIST)])
        check(is_int(c.get("execution_count")), where, "execution_count is not an integer")
    elif msg_type == "kernel_info_reply":
        reply_status(c, where, [("protocol_version", STR), ("implementation", STR), ("implementation_version", STR), ("language_info", language_info), ("banner", STR)], [("help_links", help_links), ("debugger", BOOL), ("supported_features", str_list)])
    elif msg_type == "complete_reply":
        reply_status(c, where, [("matches", str_list), ("cursor_start", INT), ("cursor_end", INT), ("metadata", DICT)])
    elif msg_type == "inspect_reply":
        reply_status(c, where, [("found", BOOL), ("data", mime_bundle), ("metadata", DICT)])
    elif msg_type == "is_complete_reply":
        fields(c, where, [("status", ("complete", "incomplete", "invalid", "unknown"))], [("indent", STR)])
        if c["status"] == "incomplete":
            check("indent" in c, where, "incomplete without indent")
    elif msg_type == "history_reply":
        reply_status(c, where, [("history", history)])
    elif msg_type == "comm_info_reply":
        reply_status(c, where, [("comms", comms)])
    elif msg_type == "shutdown_reply":
        reply_status(c, where, [("restart", BOOL)])
    elif msg_type == "interrupt_reply":
        reply_status(c, where)
    elif msg_type.endswith("_reply"):
        reply_status(c, where)
    else:
        raise SpecError(f"{where}: unknown msg_type {msg_type!r}")


def header(h, where):
    fields(h, where, [("msg_id", STR), ("session", STR), ("username", STR), ("date", lambda v, w: check(isinstance(v, str) or hasattr(v, "isoformat"), w, "is not a date")), ("msg_type", STR), ("version", STR)])
    if isinstance(h["date"], str):
        check(DATE.match(h["date"]), where, f"date {h['date']!r} is not ISO 8601")


def validate(msg, channel, protocol_version=None):
    """Raise SpecError when a message the kernel sent breaks the spec."""
    t = msg.get("msg_type") or msg.get("header", {}).get("msg_type")
    where = f"{channel} {t}"
    header(msg["header"], f"{where} header")
    if protocol_version is not None:
        check(msg["header"]["version"] == protocol_version, where, f"header version {msg['header']['version']} is not the {protocol_version} the kernel claims")
    if msg["parent_header"]:
        header(msg["parent_header"], f"{where} parent_header")
    check(isinstance(msg["metadata"], dict), where, "metadata is not an object")
    content_check(t, msg["content"], f"{where} content")


SEEN = {}


def wrap(kc, protocol_version=None):
    """Check every message this client reads; SEEN counts them per channel and msg_type."""
    for channel in ("iopub", "shell", "stdin", "control"):
        name = f"get_{channel}_msg"
        if not hasattr(kc, name):
            continue
        original = getattr(kc, name)

        def checked(*a, _original=original, _channel=channel, **kw):
            msg = _original(*a, **kw)
            validate(msg, _channel, protocol_version)
            key = f"{_channel}:{msg['header']['msg_type']}"
            SEEN[key] = SEEN.get(key, 0) + 1
            return msg

        setattr(kc, name, checked)
    return kc
