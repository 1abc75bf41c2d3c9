/**
 * Message contents per msg_type, as the Jupyter messaging spec (5.5) gives
 * them: what each request carries, what each reply and broadcast holds.
 * The protocol, the interpreter and the runtime build and read only these,
 * so a field with the wrong name or type is a compile error here rather
 * than a client's complaint.
 */

export type MimeBundle = Record<string, unknown>;
export type Metadata = Record<string, unknown>;

// ---- shell and control requests ----

export interface ExecuteRequest {
  code: string;
  silent?: boolean;
  store_history?: boolean;
  user_expressions?: Record<string, string>;
  allow_stdin?: boolean;
  stop_on_error?: boolean;
}

export interface CompleteRequest {
  code: string;
  cursor_pos?: number;
}

export interface InspectRequest {
  code: string;
  cursor_pos?: number;
  detail_level?: 0 | 1;
}

export interface IsCompleteRequest {
  code: string;
}

export interface HistoryRequest {
  output?: boolean;
  raw?: boolean;
  /** "range", "tail" or "search"; anything else gets an empty list. */
  hist_access_type?: string;
  session?: number;
  start?: number;
  stop?: number;
  n?: number;
  pattern?: string;
  unique?: boolean;
}

export interface ShutdownRequest {
  restart?: boolean;
}

export interface CommInfoRequest {
  target_name?: string;
}

export interface InputReply {
  value: string;
}

// ---- replies ----

export interface ErrorContent {
  ename: string;
  evalue: string;
  traceback: string[];
}

export type ReplyError = { status: "error" } & ErrorContent;

export interface LanguageInfo {
  name: string;
  version: string;
  mimetype: string;
  file_extension: string;
  /** A mode name, or an object with a name and an integer version (the spec's two forms). */
  codemirror_mode: string | { name: string; version?: number };
  pygments_lexer: string;
  nbconvert_exporter?: string;
}

export interface KernelInfoReply {
  status: "ok";
  protocol_version: string;
  implementation: string;
  implementation_version: string;
  language_info: LanguageInfo;
  banner: string;
  help_links: { text: string; url: string }[];
  debugger: boolean;
  /** JEP 92: the optional features this kernel implements. */
  supported_features: string[];
}

export interface PagerPayload {
  source: "page";
  data: MimeBundle;
  start: number;
}

export type UserExpressionResult = { status: "ok"; data: MimeBundle; metadata: Metadata } | ReplyError;

export type ExecuteReply =
  | { status: "ok"; execution_count: number; user_expressions: Record<string, UserExpressionResult>; payload: PagerPayload[] }
  | ({ status: "error"; execution_count: number } & ErrorContent)
  | { status: "aborted"; execution_count: number };

export interface CompletionType {
  text: string;
  type: string;
  start: number;
  end: number;
}

export interface CompleteReply {
  status: "ok";
  matches: string[];
  cursor_start: number;
  cursor_end: number;
  metadata: { _jupyter_types_experimental?: CompletionType[] };
}

export interface InspectReply {
  status: "ok";
  found: boolean;
  data: MimeBundle;
  metadata: Metadata;
}

export interface IsCompleteReply {
  status: "complete" | "incomplete" | "invalid" | "unknown";
  indent?: string;
}

export type HistoryEntry = [number, number, string] | [number, number, [string, string | null]];

export interface HistoryReply {
  status: "ok";
  history: HistoryEntry[];
}

export interface CommInfoReply {
  status: "ok";
  comms: Record<string, { target_name: string }>;
}

export interface ShutdownReply {
  status: "ok";
  restart: boolean;
}

// ---- iopub broadcasts ----

export interface Status {
  execution_state: "busy" | "idle" | "starting";
}

export interface Stream {
  name: "stdout" | "stderr";
  text: string;
}

export interface ExecuteInput {
  code: string;
  execution_count: number;
}

export interface ExecuteResult {
  execution_count: number;
  data: MimeBundle;
  metadata: Metadata;
}

export interface DisplayData {
  data: MimeBundle;
  metadata: Metadata;
  transient: { display_id?: string };
}

export interface ClearOutput {
  wait: boolean;
}

export interface CommOpen {
  comm_id: string;
  target_name: string;
  data: Record<string, unknown>;
}

export interface CommMsg {
  comm_id: string;
  data: Record<string, unknown>;
}

export interface InputRequest {
  prompt: string;
  password: boolean;
}

export interface IopubWelcome {
  subscription: string;
}

/** Everything the kernel broadcasts on iopub, by msg_type. */
export interface IopubContent {
  status: Status;
  stream: Stream;
  execute_input: ExecuteInput;
  execute_result: ExecuteResult;
  display_data: DisplayData;
  update_display_data: DisplayData;
  clear_output: ClearOutput;
  error: ErrorContent;
  iopub_welcome: IopubWelcome;
  comm_open: CommOpen;
  comm_msg: CommMsg;
  comm_close: CommMsg;
}

/** Every reply the kernel sends on shell or control, by msg_type. */
export interface ReplyContent {
  kernel_info_reply: KernelInfoReply;
  execute_reply: ExecuteReply;
  complete_reply: CompleteReply;
  inspect_reply: InspectReply;
  is_complete_reply: IsCompleteReply;
  history_reply: HistoryReply;
  comm_info_reply: CommInfoReply;
  shutdown_reply: ShutdownReply;
}

/** What the kernel sends on stdin, by msg_type. */
export interface StdinContent {
  input_request: InputRequest;
}

export type IopubType = keyof IopubContent;
export type ReplyType = keyof ReplyContent;

/** Publish a broadcast, with the current request as parent unless one is given. */
export type Publish = <T extends IopubType>(type: T, content: IopubContent[T], parent?: ParentHeader, metadata?: Metadata, buffers?: Buffer[]) => void;

/** A header, or {} for messages with no parent. */
export type ParentHeader = import("./wire").Header | Record<string, never>;
