// The node's JSON-RPC (docs/rpc.md) over fetch, and its subscriptions over WebSocket.

import { AUTH_HEADER, authHeader, repoOfUrl } from "./auth.js";
import { fromHex } from "./encoding.js";
import { Key } from "./keys.js";
import { signTx, type SignedTx, type TxJson } from "./tx.js";

/** An error answer: the JSON-RPC code (docs/rpc.md, "Errors"), message and data. */
export class RpcError extends Error {
  readonly code: number;
  readonly data: unknown;
  constructor(code: number, message: string, data?: unknown) {
    super(message);
    this.name = "RpcError";
    this.code = code;
    this.data = data;
  }
}

export interface SendOutcome {
  hash: string;
  pool_seq?: number;
  speculative?: { status: string; error?: string };
  answered_by?: string;
}

export interface Receipt {
  tx_hash: string;
  status: "success" | "failed";
  block_height: number;
  block_hash: string;
  index: number;
  fee: string;
  error?: string;
  result?: { columns: string[]; rows: unknown[][] };
  events?: { index: number | null; contract: string; name: string; args: Record<string, unknown>; reverted?: boolean }[];
}

export interface EventFilter {
  contract: string;
  name?: string;
  args?: Record<string, unknown>;
  from?: number;
  to?: number;
  limit?: number;
  after?: string;
  branch?: string;
}

export interface EventEntry {
  block_height: number;
  tx_hash: string;
  tx_index: number;
  event_index: number;
  contract: string;
  name: string;
  args: Record<string, unknown>;
}

export interface Subscription {
  /** Ends the subscription and closes its socket. */
  close(): void;
}

type Unsigned = Omit<TxJson, "chain_id" | "nonce"> & { chain_id?: string; nonce?: number | bigint };

export interface ClientOptions {
  /** A member's key: every request to the private repository the URL names is signed with it
   * (the X-Aergo-Auth header, docs/repositories.md). */
  memberKey?: Key;
}

export class Client {
  readonly url: string;
  private id = 0;
  private readonly member?: { key: Key; repo: string };

  /** `url`: the node's RPC, http(s)://host:port, or http(s)://host:port/repo/NAME for a
   * repository the node hosts (docs/repositories.md). */
  constructor(url: string, options: ClientOptions = {}) {
    this.url = url.replace(/\/+$/, "");
    if (options.memberKey) {
      const repo = repoOfUrl(this.url);
      if (!repo) throw new Error(`memberKey signs requests to a private repository: give its URL, …/repo/NAME, not ${this.url}`);
      this.member = { key: options.memberKey, repo };
    }
  }

  /** One JSON-RPC call with named parameters (undefined ones left out). */
  async call<T>(method: string, params: Record<string, unknown> = {}): Promise<T> {
    const body = JSON.stringify({ jsonrpc: "2.0", id: ++this.id, method, params: defined(params) });
    const headers: Record<string, string> = { "content-type": "application/json" };
    if (this.member) headers[AUTH_HEADER] = authHeader(this.member.key, this.member.repo, body);
    const res = await fetch(this.url, { method: "POST", headers, body });
    const text = await res.text();
    let answer: { result?: T; error?: { code: number; message: string; data?: unknown } };
    try {
      answer = JSON.parse(text);
    } catch {
      throw new RpcError(-32700, `HTTP ${res.status}: ${text.slice(0, 200)}`);
    }
    if (answer.error) throw new RpcError(answer.error.code, answer.error.message, answer.error.data);
    return answer.result as T;
  }

  chainInfo(branch?: string) {
    return this.call<{ chain_id: string; height: number; lib_height: number; best_hash: string }>("chain_info", { branch });
  }

  getAccount(address: string, height?: number, branch?: string) {
    return this.call<{ address: string; balance: string; nonce: number; pending_nonce: number; height: number }>(
      "get_account",
      { address, height, branch },
    );
  }

  getBlock(height?: number, branch?: string) {
    return this.call<{ hash: string; height: number; header: Record<string, unknown> } | null>("get_block", { height, branch });
  }

  getReceipt(hash: string, branch?: string) {
    return this.call<Receipt | null>("get_receipt", { hash, branch });
  }

  getContract(address: string, height?: number) {
    return this.call<{ address: string; tables: unknown[]; functions: unknown[]; events: { name: string; params: string[] }[] }>(
      "get_contract",
      { address, height },
    );
  }

  /** A SELECT over a contract's tables, or one of its functions with arguments. */
  query(request: { contract: string; sql?: string; function?: string; args?: unknown[]; height?: number; branch?: string }) {
    return this.call<{ columns: string[]; rows: unknown[][] }>("query", { request: defined({ ...request }) });
  }

  getEvents(filter: EventFilter) {
    return this.call<{ events: EventEntry[]; next?: string }>("get_events", { filter: defined({ ...filter }) });
  }

  estimateGas(tx: string) {
    return this.call<{ status: string; fee: string; error?: string; events?: unknown[] }>("estimate_gas", { tx });
  }

  getAccountProof(address: string, height?: number) {
    return this.call<Record<string, unknown>>("get_account_proof", { address, height });
  }

  getRowProof(contract: string, table: string, key: unknown[], height?: number) {
    return this.call<Record<string, unknown>>("get_row_proof", { contract, table, key, height });
  }

  nodeInfo() {
    return this.call<Record<string, unknown>>("node_info");
  }

  peers() {
    return this.call<{ peer_id: string; address: string; best_height: number }[]>("peers");
  }

  getTx(hash: string, branch?: string) {
    return this.call<Record<string, unknown> | null>("get_tx", { hash, branch });
  }

  producers(height?: number) {
    return this.call<Record<string, unknown>>("producers", { height });
  }

  getStake(address: string) {
    return this.call<{ address: string; staked: string; since: number; unlocks_at: number; votes: string[] }>("get_stake", { address });
  }

  /** The repositories the node hosts beside its public chain; each one's client is
   * `new Client(url + "/repo/" + name)` (docs/repositories.md). */
  repositories() {
    return this.call<{ name: string; chain_id: string; consensus: string; height: number; lib_height: number; peers: number; role: string; health: string; reason?: string }[]>("repositories");
  }

  getBranches() {
    return this.call<Record<string, unknown>[]>("get_branches");
  }

  getBranch(name: string) {
    return this.call<Record<string, unknown>>("get_branch", { name });
  }

  getTags() {
    return this.call<Record<string, unknown>[]>("get_tags");
  }

  getTag(name: string) {
    return this.call<Record<string, unknown>>("get_tag", { name });
  }

  /** What differs between two points of the chain's data (docs/branches.md, "Diff"). */
  diff(from: { branch: string; height: number }, to: { branch: string; height: number }, limit?: number) {
    return this.call<Record<string, unknown>>("diff", { from, to, limit });
  }

  /** Several encoded transactions at once: an outcome or an error each, in order. */
  sendTxs(txs: string[]) {
    return this.call<(SendOutcome | { error: { code: number; message: string; reason?: string } })[]>("send_txs", { txs });
  }

  /** Several transactions by `POST /txs` (docs/rpc.md, "Binary submission"): their borsh bytes
   * (or hex, decoded here) length-prefixed, with no hex or JSON for the node to decode; the same
   * answers as `sendTxs`. Served for the public chain only. */
  async sendTxsBinary(txs: (Uint8Array | string)[]) {
    if (repoOfUrl(this.url) !== undefined) {
      throw new RpcError(-32602, "POST /txs is served for the public chain only: use sendTxs for a repository");
    }
    const frames = txs.map((t, i) => (typeof t === "string" ? fromHex(t, `transaction ${i}`) : t));
    const body = new Uint8Array(frames.reduce((n, f) => n + 4 + f.length, 0));
    const lengths = new DataView(body.buffer);
    let at = 0;
    for (const f of frames) {
      lengths.setUint32(at, f.length, true);
      body.set(f, at + 4);
      at += 4 + f.length;
    }
    const res = await fetch(`${this.url}/txs`, {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body,
    });
    const text = await res.text();
    let answer: unknown;
    try {
      answer = JSON.parse(text);
    } catch {
      throw new RpcError(-32700, `HTTP ${res.status}: ${text.slice(0, 200)}`);
    }
    if (!Array.isArray(answer)) {
      const e = (answer as { error?: { code: number; message: string; data?: unknown } }).error;
      throw new RpcError(e?.code ?? -32603, e?.message ?? `HTTP ${res.status}`, e?.data);
    }
    return answer as (SendOutcome | { error: { code: number; message: string; reason?: string } })[];
  }

  sendTx(tx: string) {
    return this.call<SendOutcome>("send_tx", { tx });
  }

  /** Signs `body` with `key` and sends it; `chain_id` and `nonce` come from the node when absent. */
  async send(key: Key, body: Unsigned): Promise<SignedTx & { outcome: SendOutcome }> {
    const chain_id = body.chain_id ?? (await this.chainInfo(body.branch)).chain_id;
    const nonce = body.nonce ?? (await this.getAccount(key.address, undefined, body.branch)).pending_nonce;
    const signed = signTx({ ...body, chain_id, nonce }, key);
    const outcome = await this.sendTx(signed.tx);
    return { ...signed, outcome };
  }

  /** Polls for a transaction's receipt (every 200 ms) until it is there or `timeoutMs` passes. */
  async waitReceipt(hash: string, timeoutMs = 30_000, branch?: string): Promise<Receipt> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.getReceipt(hash, branch);
      if (r) return r;
      if (Date.now() > deadline) throw new Error(`no receipt for ${hash} within ${timeoutMs} ms`);
      await new Promise((ok) => setTimeout(ok, 200));
    }
  }

  /** The events of final blocks as `subscribe_events` streams them (history from `from` first). */
  subscribeEvents(filter: EventFilter, onEvent: (e: EventEntry) => void, onError?: (e: Error) => void): Promise<Subscription> {
    return this.subscribe("subscribe_events", "unsubscribe_events", { filter: defined({ ...filter }) }, onEvent, onError);
  }

  /** New blocks as they are committed. */
  subscribeBlocks(onBlock: (b: { hash: string; height: number }) => void, branch?: string, onError?: (e: Error) => void) {
    return this.subscribe("subscribe_blocks", "unsubscribe_blocks", { branch }, onBlock, onError);
  }

  private subscribe<T>(
    method: string,
    unsubscribe: string,
    params: Record<string, unknown>,
    onItem: (item: T) => void,
    onError?: (e: Error) => void,
  ): Promise<Subscription> {
    if (this.member) {
      return Promise.reject(
        new Error(
          "a private repository signs a WebSocket at its upgrade (X-Aergo-Auth), which the WebSocket API cannot send: poll (getEvents, getBlock) instead",
        ),
      );
    }
    const Ws = (globalThis as { WebSocket?: typeof WebSocket }).WebSocket;
    if (!Ws) return Promise.reject(new Error("no WebSocket here (Node.js 20: run with --experimental-websocket)"));
    const ws = new Ws(this.url.replace(/^http/, "ws"));
    return new Promise((resolve, reject) => {
      let subscription: unknown = null;
      ws.onopen = () => ws.send(JSON.stringify({ jsonrpc: "2.0", id: 1, method, params: defined(params) }));
      ws.onerror = () => {
        const e = new Error(`WebSocket to ${this.url} failed`);
        if (subscription === null) reject(e);
        else onError?.(e);
      };
      ws.onmessage = (m: MessageEvent) => {
        const msg = JSON.parse(String(m.data));
        if (msg.id === 1) {
          if (msg.error) {
            reject(new RpcError(msg.error.code, msg.error.message, msg.error.data));
            ws.close();
            return;
          }
          subscription = msg.result;
          resolve({
            close: () => {
              try {
                ws.send(JSON.stringify({ jsonrpc: "2.0", id: 2, method: unsubscribe, params: [subscription] }));
              } finally {
                ws.close();
              }
            },
          });
        } else if (msg.params && msg.params.subscription === subscription) {
          if (msg.params.error) onError?.(new RpcError(msg.params.error.code ?? -32603, msg.params.error.message ?? "subscription error"));
          else onItem(msg.params.result as T);
        }
      };
    });
  }
}

function defined<T extends Record<string, unknown>>(o: T): T {
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o;
}
