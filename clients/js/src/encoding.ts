// Borsh as the AERGO Chain writes it (docs/dapps.md): little-endian integers, strings and byte
// vectors as a u32 length then the bytes, vectors as a u32 count then the items, enums as a u8 tag.

const textEncoder = new TextEncoder();

/** Why an input cannot be encoded: names the field. */
export class EncodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "EncodeError";
  }
}

export class Writer {
  private parts: number[] = [];

  u8(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new EncodeError(`u8 out of range: ${v}`);
    this.parts.push(v);
    return this;
  }

  u32(v: number): this {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new EncodeError(`u32 out of range: ${v}`);
    return this.unsigned(BigInt(v), 4);
  }

  u64(v: bigint | number, what = "u64"): this {
    return this.unsigned(toBigInt(v, what), 8, what);
  }

  u128(v: bigint | number, what = "u128"): this {
    return this.unsigned(toBigInt(v, what), 16, what);
  }

  i64(v: bigint | number, what = "i64"): this {
    return this.signed(toBigInt(v, what), 8, what);
  }

  i128(v: bigint, what = "i128"): this {
    return this.signed(v, 16, what);
  }

  bool(v: boolean): this {
    return this.u8(v ? 1 : 0);
  }

  /** Fixed-size bytes (an address, a key, a hash): no length. */
  fixed(bytes: Uint8Array, len: number, what: string): this {
    if (bytes.length !== len) throw new EncodeError(`${what}: ${bytes.length} bytes, not ${len}`);
    for (const b of bytes) this.parts.push(b);
    return this;
  }

  /** A byte vector: its length, then the bytes. */
  bytes(bytes: Uint8Array): this {
    this.u32(bytes.length);
    for (const b of bytes) this.parts.push(b);
    return this;
  }

  string(s: string): this {
    return this.bytes(textEncoder.encode(s));
  }

  vec<T>(items: readonly T[], each: (w: this, item: T) => void): this {
    this.u32(items.length);
    for (const item of items) each(this, item);
    return this;
  }

  /** Bytes already encoded (a nested value). */
  raw(bytes: Uint8Array): this {
    for (const b of bytes) this.parts.push(b);
    return this;
  }

  finish(): Uint8Array {
    return Uint8Array.from(this.parts);
  }

  private unsigned(v: bigint, len: number, what = "integer"): this {
    if (v < 0n || v >= 1n << BigInt(8 * len)) throw new EncodeError(`${what} out of range: ${v}`);
    for (let i = 0; i < len; i++) {
      this.parts.push(Number(v & 0xffn));
      v >>= 8n;
    }
    return this;
  }

  private signed(v: bigint, len: number, what: string): this {
    const bits = BigInt(8 * len);
    const half = 1n << (bits - 1n);
    if (v < -half || v >= half) throw new EncodeError(`${what} out of range: ${v}`);
    return this.unsigned(v < 0n ? v + (1n << bits) : v, len, what);
  }
}

function toBigInt(v: bigint | number, what: string): bigint {
  if (typeof v === "bigint") return v;
  if (!Number.isSafeInteger(v)) throw new EncodeError(`${what}: ${v} is not a safe integer (use a bigint)`);
  return BigInt(v);
}

export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

export function fromHex(hex: string, what = "hex"): Uint8Array {
  const h = hex.startsWith("0x") ? hex.slice(2) : hex;
  if (h.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(h)) throw new EncodeError(`${what}: not hex`);
  const out = new Uint8Array(h.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(h.slice(2 * i, 2 * i + 2), 16);
  return out;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** blake3(domain ‖ 0 ‖ bytes): how the chain hashes transactions, blocks and addresses. */
export function domainHash(blake3: (b: Uint8Array) => Uint8Array, domain: string, bytes: Uint8Array): Uint8Array {
  return blake3(concat(textEncoder.encode(domain), Uint8Array.of(0), bytes));
}
